"""Stroke-editing synthesis engine for TextPecker's anomaly detector: rendered text lines with per-character labels.

Paper (TextPecker, arXiv 2602.20903; its engine extends SynthTIGER): a character is edited with three independent
operations, each with p = 0.4 — **delete** 10-50 % of its strokes (keeping at least one), **add** 10-50 % as many
strokes taken from another character, **self-swap** stroke pairs (each translated onto the other's centroid) — and
the flawed character is labelled ``<#>``.

Ours: the paper takes CJK strokes from hanzi-writer-data; here a glyph's "strokes" are the pieces of its rendered
mask cut by a 3x3 grid into connected components (works for any font and script with no stroke database; a
Latin "E" gives 5-8 pieces). We add **partial erasure** (a rectangle covering 20-40 % of the glyph) as a fourth
edit, require every edited glyph to differ from the clean one in at least 15 % of its ink (smaller changes are
not visible flaws; partial erasures are added until it does), and apply blur, shear, noise, colours and sizes to
whole lines whatever their labels, so that the detector must learn glyph structure, not image quality.
One line = one image (OCR crops one line at a time). Scripts: English (DejaVu faces) and Chinese (the CJK fonts of the
`mplfonts` wheel), each with training fonts and held-out fonts of other designs.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
TRAIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerifCondensed.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSans-ExtraLight.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerifCondensed-BoldItalic.ttf",
)
# held out of training: the whole monospace family and two more faces, to measure generalisation to unseen fonts
HELDOUT_FONTS = ("DejaVuSansMono.ttf", "DejaVuSansCondensed.ttf", "DejaVuSerif-Bold.ttf")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# Chinese: the CJK fonts of the `mplfonts` package (part of the ocr extra). Noto Sans CJK, Noto Serif CJK and Source
# Han Mono train; SimHei, a separate design, is held out.
ZH_TRAIN_FONTS = ("NotoSansCJKsc-Regular.otf", "NotoSerifCJKsc-Regular.otf", "SourceHanMonoSC-Regular.otf")
ZH_HELDOUT_FONTS = ("SimHei.ttf",)
HANZI = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小么心多天"
    "而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些"
    "与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相"
    "次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立"
    "马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共"
)
ZH_WORDS = (
    "欢迎光临 营业时间 咖啡 书店 北京 上海 出口 入口 停车场 图书馆 博物馆 火车站 医院 学校 银行 超市 餐厅 面包 "
    "新鲜水果 "
    "花店 电影院 公园 市场 酒店 中国 大学 东门 西门 南路 北路 注意安全 小心地滑 禁止吸烟 开业大吉 生日快乐 新年快乐 "
    "春天 夏天 秋天 冬天 山水 长江 黄河 天气 好消息 今日特价 免费 优惠 开放 关闭 请勿打扰 文化 历史 音乐 电话 服务"
).split()
WORDS = (
    "open sale coffee hotel garden river music north market station library bakery cinema museum bridge "
    "harbour festival winter summer golden happy street pizza books flowers welcome exit private parking"
).split()
EDITS = ("delete", "add", "swap", "erase")
MIN_CHANGE = 0.15  # an edited glyph differs from the clean one in at least this share of its ink


@dataclass
class SynthLine:
    image: Any  # PIL RGB image of one text line
    text: str
    labels: list[int]  # per character of ``text``: 1 = structurally edited (spaces are 0)
    edits: list[list[str]] = field(default_factory=list)  # the edits applied to each character

    @property
    def marked(self) -> str:
        """The paper's notation: each flawed character replaced by ``<#>``."""
        return "".join("<#>" if flag else ch for ch, flag in zip(self.text, self.labels, strict=True))


def font_dirs() -> list[Path]:
    """Where fonts are looked up: the system DejaVu directory, the CJK fonts of the `mplfonts` package, and the
    DejaVu faces matplotlib ships (a fallback where the Debian fonts are not installed)."""
    import importlib.util

    dirs = [FONT_DIR]
    for package, sub in (("mplfonts", "fonts"), ("matplotlib", "mpl-data/fonts/ttf")):  # located, not imported
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            dirs.append(Path(list(spec.submodule_search_locations)[0]) / sub)
    return dirs


def font_paths(names: tuple[str, ...]) -> list[Path]:
    paths = []
    for name in names:  # the first directory holding a face wins
        found = next((d / name for d in font_dirs() if (d / name).is_file()), None)
        if found is not None:
            paths.append(found)
    if not paths:
        raise FileNotFoundError(
            f"none of the fonts {', '.join(names)} found in {', '.join(map(str, font_dirs()))} "
            "(Latin: Debian fonts-dejavu-core and fonts-dejavu-extra; Chinese: pip install mplfonts)"
        )
    return paths


def _pieces(mask: np.ndarray, grid: int = 3) -> list[np.ndarray]:
    """The glyph's stroke pieces: connected components of the mask within each cell of a grid x grid cut."""
    import cv2

    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pieces = []
    for gy in range(grid):
        for gx in range(grid):
            cell = np.zeros_like(mask)
            cy0, cy1 = y0 + (y1 - y0) * gy // grid, y0 + (y1 - y0) * (gy + 1) // grid
            cx0, cx1 = x0 + (x1 - x0) * gx // grid, x0 + (x1 - x0) * (gx + 1) // grid
            cell[cy0:cy1, cx0:cx1] = mask[cy0:cy1, cx0:cx1]
            n, labels = cv2.connectedComponents(cell.astype(np.uint8))
            pieces += [labels == i for i in range(1, n) if (labels == i).sum() >= 4]
    return pieces


def _shift(piece: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(piece)
    h, w = piece.shape
    src = piece[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def _centroid(piece: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(piece)
    return float(ys.mean()), float(xs.mean())


def edit_glyph(mask: np.ndarray, donor: np.ndarray, rng: random.Random) -> tuple[np.ndarray, list[str]]:
    """Apply the paper's edits (each with p = 0.4, at least one) to a glyph mask; returns the mask and edit names."""
    pieces = _pieces(mask)
    chosen = [e for e in EDITS if rng.random() < 0.4] or [rng.choice(EDITS)]
    if len(pieces) < 2:
        chosen = [e for e in chosen if e in ("add", "erase")] or ["erase"]
    out = mask.copy()
    applied = []
    for edit in chosen:
        if edit == "delete" and len(pieces) >= 2:
            k = min(len(pieces) - 1, max(1, round(rng.uniform(0.1, 0.5) * len(pieces))))
            for piece in rng.sample(pieces, k):
                out &= ~piece
            applied.append(edit)
        elif edit == "add":
            borrowed = _pieces(donor)
            if borrowed:
                k = max(1, round(rng.uniform(0.1, 0.5) * max(1, len(pieces))))
                for piece in rng.sample(borrowed, min(k, len(borrowed))):
                    out |= piece
                applied.append(edit)
        elif edit == "swap" and len(pieces) >= 2:
            k = max(1, round(rng.uniform(0.1, 0.5) * len(pieces) / 2))
            for _ in range(k):
                a, b = rng.sample(pieces, 2)
                (ay, ax), (by, bx) = _centroid(a), _centroid(b)
                out &= ~(a | b)
                out |= _shift(a, round(by - ay), round(bx - ax)) | _shift(b, round(ay - by), round(ax - bx))
            applied.append(edit)
        elif edit == "erase":
            out = _erase(out, mask, rng)
            applied.append(edit)
    for _ in range(3):  # an edit that changes little of the glyph is not a visible flaw: add partial erasures
        if (out ^ mask).sum() >= MIN_CHANGE * max(1, mask.sum()):
            break
        out = _erase(out, mask, rng)
        applied.append("erase")
    return out, applied


def _erase(out: np.ndarray, mask: np.ndarray, rng: random.Random) -> np.ndarray:
    """Erase a rectangle covering 20-40 % of the glyph's bounding box."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return out
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    area = rng.uniform(0.2, 0.4)
    eh = max(1, round(h * rng.uniform(area, 1.0)))
    ew = max(1, round(h * w * area / eh))
    y = rng.randint(ys.min(), max(ys.min(), ys.max() - eh + 1))
    x = rng.randint(xs.min(), max(xs.min(), xs.max() - ew + 1))
    out = out.copy()
    out[y : y + eh, x : x + ew] = False
    return out


def render_line(
    text: str,
    font_path: Path,
    rng: random.Random,
    p_edit: float = 0.3,
    size: int | None = None,
    donors: str = ALPHABET,
) -> SynthLine:
    """Render ``text`` glyph by glyph; each non-space character is edited with probability ``p_edit``."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = size or rng.randint(28, 48)
    font = ImageFont.truetype(str(font_path), size)
    ascent, descent = font.getmetrics()
    height = ascent + descent + 2 * (pad := max(4, size // 4))
    advances = [font.getlength(ch) for ch in text]
    width = int(sum(advances) + 2 * pad + size)
    ink = np.zeros((height, width), dtype=bool)
    labels, edits = [], []
    x = float(pad)
    for ch, adv in zip(text, advances, strict=True):
        if ch.isspace():
            labels.append(0)
            edits.append([])
            x += adv
            continue
        canvas = Image.new("L", (width, height), 0)
        ImageDraw.Draw(canvas).text((x, pad), ch, fill=255, font=font)
        mask = np.asarray(canvas) > 127
        if rng.random() < p_edit:
            donor_canvas = Image.new("L", (width, height), 0)
            donor = rng.choice([c for c in donors if c != ch])
            ImageDraw.Draw(donor_canvas).text((x, pad), donor, fill=255, font=font)
            mask, applied = edit_glyph(mask, np.asarray(donor_canvas) > 127, rng)
            labels.append(1)
            edits.append(applied)
        else:
            labels.append(0)
            edits.append([])
        ink |= mask
        x += adv
    if rng.random() < 0.3:  # stroke weight varies between fonts and renderers: thicken or thin the whole line
        import cv2

        kernel = np.ones((2, 2), np.uint8)
        op = cv2.dilate if rng.random() < 0.6 or size < 36 else cv2.erode
        ink = op(ink.astype(np.uint8), kernel).astype(bool)
    background = np.array([rng.randint(190, 255) for _ in range(3)], dtype=np.float32)
    foreground = np.array([rng.randint(0, 70) for _ in range(3)], dtype=np.float32)
    pixels = np.where(ink[..., None], foreground, background)
    pixels += np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(0, 6), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    shear = rng.uniform(-0.2, 0.2)
    if abs(shear) > 0.05:
        image = image.transform(
            (width + int(abs(shear) * height), height),
            Image.Transform.AFFINE,
            (1, shear, -abs(shear) * height if shear > 0 else 0, 0, 1, 0),
            fillcolor=tuple(int(v) for v in background),
        )
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return SynthLine(image, text, labels, edits)


def random_text(rng: random.Random, script: str = "en") -> str:
    if script == "zh":
        if rng.random() < 0.7:
            return "".join(rng.sample(ZH_WORDS, rng.randint(1, 2)))
        return "".join(rng.choice(HANZI) for _ in range(rng.randint(2, 6)))
    if rng.random() < 0.7:
        words = rng.sample(WORDS, rng.randint(1, 2))
        case = rng.choice([str.upper, str.lower, str.capitalize])
        return " ".join(case(w) for w in words)
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 8)))


SCRIPTS = {"en": (TRAIN_FONTS, HELDOUT_FONTS, ALPHABET), "zh": (ZH_TRAIN_FONTS, ZH_HELDOUT_FONTS, HANZI)}


def synthesize(
    n: int, seed: int, fonts: tuple[str, ...] | None = None, p_edit: float = 0.3, script: str = "en"
) -> list[SynthLine]:
    """``n`` lines of ``script`` ("en" or "zh") in ``fonts`` (default: the script's training fonts)."""
    if script not in SCRIPTS:
        raise ValueError(f"script: expected one of {', '.join(SCRIPTS)}, got {script!r}")
    train_fonts, _, donors = SCRIPTS[script]
    rng = random.Random(seed)
    paths = font_paths(fonts or train_fonts)
    if script == "en":
        return [render_line(random_text(rng), rng.choice(paths), rng, p_edit) for _ in range(n)]
    return [
        render_line(random_text(rng, script), rng.choice(paths), rng, p_edit, rng.randint(32, 56), donors)
        for _ in range(n)
    ]


def write_dataset(lines: list[SynthLine], out: Path) -> Path:
    """PNG per line plus ``labels.jsonl`` (image, text, labels, edits, marked)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "labels.jsonl").open("w", encoding="utf-8") as f:
        for i, line in enumerate(lines):
            name = f"{i:06d}.png"
            line.image.save(out / name)
            row = {"image": name, "text": line.text, "labels": line.labels, "edits": line.edits, "marked": line.marked}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out / "labels.jsonl"
