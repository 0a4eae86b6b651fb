"""TextPecker reward throughput on 512x512 images, batched, beside plain paddleocr on the same images.

Images: short English phrases rendered with DejaVu Sans at random sizes and positions (seeded), some on two lines;
the target is the text drawn, so a perfect reward is 1.
The reward = paddleocr text detection + one recognition pass with CTC evidence + the anomaly detector + the scores;
"plain OCR" is paddleocr's full pipeline (detection + recognition) alone, on the same models. Both read the same
images, alternating, best of ``--repeats``.
Ends with ``textpecker_images_per_s=X plain_ocr_images_per_s=Y`` (issue 4 target: X >= 15 on 2 CPU cores).

    python bench/textpecker.py            # 64 images, batches of 16
"""

from __future__ import annotations

import argparse
import random
import time

WORDS = "open sale coffee hotel garden river music north market station library bakery cinema museum".split()


def images(n: int, seed: int):
    from PIL import Image, ImageDraw, ImageFont

    from verirl.rewards.textpecker.synth import font_paths

    rng = random.Random(seed)
    out, texts = [], []
    for _ in range(n):
        text = " ".join(rng.sample(WORDS, rng.randint(1, 3))).upper()
        size = rng.randint(32, 64)
        font = ImageFont.truetype(str(font_paths(("DejaVuSans.ttf",))[0]), size)
        img = Image.new("RGB", (512, 512), tuple(rng.randint(200, 255) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        draw.text((rng.randint(10, 60), rng.randint(40, 300)), text, fill=(rng.randint(0, 60),) * 3, font=font)
        if rng.random() < 0.5:  # a second line, part of the target
            second = rng.choice(WORDS).upper()
            draw.text((rng.randint(10, 60), 400), second, fill="black", font=font)
            text += " " + second
        out.append(img)
        texts.append(text)
    return out, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from verirl.rewards.textpecker import TextPecker
    from verirl.rewards.textpecker.images import to_bgr
    from verirl.rewards.textpecker.ocr import paddleocr_pipeline

    pics, texts = images(args.n, args.seed)
    start = time.perf_counter()
    scorer = TextPecker(omega=5.0)
    scorer.score(pics[:1], texts[:1])  # load the models
    print(f"start-up (models prepared and loaded): {time.perf_counter() - start:.1f} s")
    arrays = [to_bgr(p)[0] for p in pics]
    plain = paddleocr_pipeline()
    list(plain.predict(arrays[:1]))
    best_reward = best_plain = float("inf")
    rewards: list = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        rewards = []
        for i in range(0, args.n, args.batch):
            rewards += scorer.score(pics[i : i + args.batch], texts[i : i + args.batch])
        best_reward = min(best_reward, time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(0, args.n, args.batch):
            list(plain.predict(arrays[i : i + args.batch]))
        best_plain = min(best_plain, time.perf_counter() - t)
    semantic = float(np.mean([r.semantic for r in rewards]))
    print(
        f"{args.n} images 512x512, batches of {args.batch}: mean S_E {semantic:.3f}, "
        f"mean S_Q {np.mean([r.structural for r in rewards]):.3f}, flagged characters "
        f"{sum(len(r.anomalies) for r in rewards)}, mean reward {np.mean([r.reward for r in rewards]):.3f}"
    )
    print(f"textpecker_images_per_s={args.n / best_reward:.1f} plain_ocr_images_per_s={args.n / best_plain:.1f}")


if __name__ == "__main__":
    main()
