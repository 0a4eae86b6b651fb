"""Synthesis engine for TextPecker's anomaly detector: text lines rendered glyph by glyph, each character labelled
sound or structurally damaged.

Paper (TextPecker, arXiv 2602.20903; its engine extends SynthTIGER): a character is edited with three independent
operations, each with p = 0.4 — **delete** 10-50 % of its strokes, **add** strokes taken from another character,
**self-swap** stroke pairs — and the flawed character is labelled ``<#>``; the paper names the anomalies generators
make as distortion, blurriness and misalignment besides missing and extra strokes.

Ours: the paper's stroke edits are one of eight damage kinds (:mod:`.damage`: strokes, missing parts, spurious
strokes, distortion, local blur/smear, misalignment, fused glyphs, mirrored glyphs), each damaged character gets one
kind; every damaged glyph differs visibly from the clean one. So that the detector learns glyph structure, not the
renderer, whole lines vary in font (36 Latin and 5 CJK training faces of several designs; held-out fonts are other
designs), size, colours, backgrounds, noise, blur, JPEG, scale, shear and perspective (:mod:`.appearance`) whatever
their labels. One line = one image (OCR crops one line at a time).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verirl.rewards.textpecker.appearance import finish_line
from verirl.rewards.textpecker.damage import DAMAGE_TYPES, MASK_TYPES, blur_region, damage_mask, glyph_box

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
# Latin training faces: DejaVu (Debian), STIX and Computer Modern (matplotlib's own fonts) and the font-* wheels:
# Source Sans Pro and Lato (humanist sans), Manrope (geometric sans), Hanken Grotesk (grotesque), Source Serif Pro and
# Caladea (serif), Intuitive (rounded, informal) and Amatic SC (hand-drawn, small caps)
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
    "SourceSansPro-Regular.ttf",
    "SourceSansPro-It.ttf",
    "SourceSansPro-Bold.ttf",
    "SourceSansPro-Light.ttf",
    "SourceSansPro-Black.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBol.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmb10.ttf",
    "Lato-Regular.ttf",
    "Lato-Bold.ttf",
    "Lato-Italic.ttf",
    "Lato-Light.ttf",
    "Manrope-Regular.ttf",
    "Manrope-ExtraBold.ttf",
    "HankenGrotesk-Regular.otf",
    "HankenGrotesk-SemiBoldItalic.otf",
    "SourceSerifPro-Regular.ttf",
    "SourceSerifPro-It.ttf",
    "SourceSerifPro-Bold.ttf",
    "Caladea-Regular.ttf",
    "Caladea-BoldItalic.ttf",
    "Intuitive.ttf",
    "AmaticSC-Regular.ttf",
    "AmaticSC-Bold.ttf",
)
# held out of training, to measure generalisation to unseen designs: the DejaVu monospace family and two more DejaVu
# faces, Roboto (font-roboto), Fredoka One (rounded; font-fredoka-one), Computer Modern typewriter
HELDOUT_FONTS = (
    "DejaVuSansMono.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSerif-Bold.ttf",
    "Roboto-Regular.ttf",
    "Roboto-BoldItalic.ttf",
    "FredokaOne-Regular.ttf",
    "cmtt10.ttf",
)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# Chinese: the CJK fonts of the `mplfonts` package (part of the ocr extra). Noto Sans / Serif CJK and Source Han Mono /
# Serif train; SimHei, a separate design, is held out.
ZH_TRAIN_FONTS = (
    "NotoSansCJKsc-Regular.otf",
    "NotoSerifCJKsc-Regular.otf",
    "SourceHanMonoSC-Regular.otf",
    "SourceHanSerifSC-Regular.otf",
    "NotoSansMonoCJKsc-Regular.otf",
)
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


@dataclass
class SynthLine:
    image: Any  # PIL RGB image of one text line
    text: str
    labels: list[int]  # per character of ``text``: 1 = structurally damaged (spaces are 0)
    edits: list[list[str]] = field(default_factory=list)  # the damage applied to each character

    @property
    def marked(self) -> str:
        """The paper's notation: each flawed character replaced by ``<#>``."""
        return "".join("<#>" if flag else ch for ch, flag in zip(self.text, self.labels, strict=True))


# the font-* wheels of the ocr extra (pyproject.toml), by import name
FONT_WHEELS = (
    "font_source_sans_pro",
    "font_roboto",
    "font_fredoka_one",
    "font_lato",
    "font_manrope",
    "font_hanken_grotesk",
    "font_source_serif_pro",
    "font_caladea",
    "font_intuitive",
    "font_amatic_sc",
)


def font_dirs() -> list[Path]:
    """Where fonts are looked up: the system DejaVu directory, then the font files shipped in Python packages (the
    CJK fonts of `mplfonts`, matplotlib's DejaVu, STIX and Computer Modern, and the font-* wheels)."""
    import importlib.util

    dirs = [FONT_DIR]
    packages = [("mplfonts", "fonts"), ("matplotlib", "mpl-data/fonts/ttf")]
    packages += [(package, "files") for package in FONT_WHEELS]  # each font-* wheel keeps its faces in files/
    for package, sub in packages:  # located, not imported
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            dirs.append(Path(list(spec.submodule_search_locations)[0]) / sub)
    return dirs


def font_paths(names: tuple[str, ...]) -> list[Path]:
    """The files of the named faces that are installed (the first directory holding a face wins)."""
    dirs, paths = font_dirs(), []
    for name in names:
        found = next((d / name for d in dirs if (d / name).is_file()), None)
        if found is not None:
            paths.append(found)
    if not paths:
        raise FileNotFoundError(
            f"none of the fonts {', '.join(names)} found in {', '.join(map(str, dirs))} "
            "(Latin: Debian fonts-dejavu-core and fonts-dejavu-extra or pip install 'verirl[ocr]'; "
            "Chinese: pip install mplfonts)"
        )
    return paths


def _glyph_mask(ch: str, x: float, top: int, font: Any, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).text((x, top), ch, fill=255, font=font)
    return np.asarray(canvas) > 127


def _choose_damage(text: str, i: int, damage: tuple[str, ...], fused_left: bool, rng: random.Random) -> str:
    """One kind from ``damage``; a glyph fuses only into a left neighbour that is not itself pushed into another."""
    kinds = [k for k in damage if k != "fuse" or (i > 0 and not text[i - 1].isspace() and not fused_left)]
    return rng.choice(kinds or ["missing"])


def render_line(
    text: str,
    font_path: Path,
    rng: random.Random,
    p_edit: float = 0.3,
    size: int | None = None,
    donors: str = ALPHABET,
    damage: tuple[str, ...] = DAMAGE_TYPES,
) -> SynthLine:
    """Render ``text`` glyph by glyph; each non-space character is damaged with probability ``p_edit`` by one kind
    drawn from ``damage``. A fused glyph overlaps its left neighbour: both are labelled."""
    from PIL import ImageFont

    size = size or rng.randint(24, 56)
    font = ImageFont.truetype(str(font_path), size)
    ascent, descent = font.getmetrics()
    pad, pad_y = max(4, size // 4), rng.randint(max(4, size // 5), max(5, size // 2))
    height = ascent + descent + 2 * pad_y
    advances = [font.getlength(ch) for ch in text]
    width = int(sum(advances) + 2 * pad + size)
    ink = np.zeros((height, width), dtype=bool)
    labels, edits = [0] * len(text), [[] for _ in text]
    blurred: list[tuple[int, int, int, int]] = []
    x = float(pad)
    for i, (ch, adv) in enumerate(zip(text, advances, strict=True)):
        if ch.isspace():
            x += adv
            continue
        kind = _choose_damage(text, i, damage, "fuse:overlap" in edits[i - 1], rng) if rng.random() < p_edit else None
        draw_x = x - rng.uniform(0.35, 0.6) * adv if kind == "fuse" else x
        mask = _glyph_mask(ch, draw_x, pad_y, font, ink.shape)
        box = glyph_box(mask)
        if kind is not None and box is not None:
            if kind in MASK_TYPES:
                donor_ch = rng.choice([c for c in donors if c != ch])  # drawn for every kind: the same random stream
                donor = _glyph_mask(donor_ch, x, pad_y, font, ink.shape) if kind == "strokes" else None
                mask, applied = damage_mask(kind, ch, mask, donor, rng, (box[0], height - box[1]))
            elif kind == "fuse":
                applied = ["fuse:overlap"]
                labels[i - 1] = 1
                edits[i - 1].append("fuse:neighbour")
            else:  # blur: applied to the pixels once the line is drawn
                blurred.append(box)
                applied = ["blur"]
            labels[i] = 1 if applied else 0
            edits[i] = applied
        ink |= mask
        x += adv
    image = finish_line(ink, rng, size, lambda pixels: [blur_region(pixels, b, size, rng) for b in blurred])
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
    n: int,
    seed: int,
    fonts: tuple[str, ...] | None = None,
    p_edit: float = 0.3,
    script: str = "en",
    damage: tuple[str, ...] = DAMAGE_TYPES,
) -> list[SynthLine]:
    """``n`` lines of ``script`` ("en" or "zh") in ``fonts`` (default: the script's training fonts); damaged
    characters get one kind each from ``damage`` (default: all of :data:`~.damage.DAMAGE_TYPES`; a kind named twice
    is drawn twice as often)."""
    if script not in SCRIPTS:
        raise ValueError(f"script: expected one of {', '.join(SCRIPTS)}, got {script!r}")
    unknown = sorted(set(damage) - set(DAMAGE_TYPES))
    if unknown or not damage:
        raise ValueError(f"damage: expected some of {', '.join(DAMAGE_TYPES)}, got {', '.join(unknown) or 'none'}")
    train_fonts, _, donors = SCRIPTS[script]
    rng = random.Random(seed)
    paths = font_paths(fonts or train_fonts)
    if script == "en":
        return [render_line(random_text(rng), rng.choice(paths), rng, p_edit, damage=damage) for _ in range(n)]
    return [
        render_line(random_text(rng, script), rng.choice(paths), rng, p_edit, rng.randint(28, 60), donors, damage)
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
