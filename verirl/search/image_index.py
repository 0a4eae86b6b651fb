"""Reverse image search over labelled images: which known image does a query image show, and what is it?

Each entry is a (title, image) pair; a query returns the titles of the most similar images, each with its passage
from a corpus when one is given. Built in: the 195 country flags of :mod:`verirl.search.flags`
(:meth:`ImageIndex.flags`); a user collection is a JSONL file of ``{"image": path, "title": str}`` lines
(:meth:`ImageIndex.from_jsonl`).

Our design choices: no image-embedding weights are available offline, and the task — recognise a re-encoded,
rescaled, slightly cropped copy of a known picture — does not need semantics, so the feature is a tiny thumbnail:
a 16×12 RGB thumbnail (box filter) concatenated with a 32×24 greyscale one (a little more shape at a finer scale),
each mean-centred and L2-normalised, the whole L2-normalised; similarity is the cosine (a dot product). Mean-centring
makes it invariant to a uniform brightness shift; box filtering averages away noise and JPEG artefacts. On flags
distorted by a 60-90 % resize, a crop of up to 6 % per side, Gaussian noise (sigma 8) and JPEG quality 40-70
(:func:`distort`), top-1 accuracy is about 99 %; the misses are flags that are near-identical (Romania and Chad).
When several images share a title, a title appears once, with its best score.

A missing or unreadable image raises :class:`~verirl.errors.VerirlError` with one line naming the file — the search
environment turns it into an observation for the model.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from verirl.errors import VerirlError
from verirl.search.corpus import Corpus, Hit, read_string_rows

if TYPE_CHECKING:
    from PIL import Image as PILImage

COLOR_SIZE = (16, 12)  # (width, height) of the colour thumbnail
GRAY_SIZE = (32, 24)  # (width, height) of the greyscale thumbnail
MAX_PIXELS = 50_000_000  # refuse larger images (decompression bombs)

ImageInput = str | Path | bytes | np.ndarray


def open_image(image: ImageInput, name: str | None = None) -> PILImage.Image:
    """An RGB PIL image from a path, encoded bytes (PNG, JPEG, ...) or an (H, W[, 3|4]) array.

    Raises VerirlError with one line naming the file (or ``name``) if it is missing or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        return _from_array(image, name or "image array")
    if isinstance(image, (bytes, bytearray)):
        label, source = name or "image bytes", io.BytesIO(image)
    elif isinstance(image, (str, Path)):
        label, source = name or str(image), Path(image)
        if not source.is_file():
            raise VerirlError(f"{label}: no such image file")
    else:
        raise VerirlError(f"expected an image path, bytes or array, got {type(image).__name__}")
    try:
        with Image.open(source) as im:
            if im.width * im.height > MAX_PIXELS:
                raise VerirlError(f"{label}: image too large ({im.width}x{im.height} pixels)")
            im.load()
            return im.convert("RGB")
    except VerirlError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerirlError(f"{label}: not a readable image ({reason})") from None


def _from_array(arr: np.ndarray, label: str) -> PILImage.Image:
    from PIL import Image

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or min(arr.shape[:2]) < 1:
        raise VerirlError(f"{label}: expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "fiub":
            raise VerirlError(f"{label}: expected a numeric image array, got dtype {arr.dtype}")
        x = arr.astype(np.float64)
        if arr.dtype.kind == "f" and np.nanmax(x) <= 1.0:
            x = x * 255.0
        arr = np.clip(np.nan_to_num(x), 0, 255).round().astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


def image_feature(image: ImageInput, name: str | None = None) -> np.ndarray:
    """The unit-length feature of an image: colour and greyscale thumbnails, each centred and normalised."""
    from PIL import Image

    im = open_image(image, name)
    colour = np.asarray(im.resize(COLOR_SIZE, Image.Resampling.BOX), dtype=np.float32).ravel()
    grey = np.asarray(im.convert("L").resize(GRAY_SIZE, Image.Resampling.BOX), dtype=np.float32).ravel()
    v = np.concatenate([_unit(colour - colour.mean()), _unit(grey - grey.mean())])
    return _unit(v)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-8 else v


def distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A re-captured copy of an image, for measuring reverse search: resize to 60-90 %, crop up to 6 % per side,
    add Gaussian noise (sigma 8), re-encode as JPEG at quality 40-70. Returns an (H, W, 3) uint8 array."""
    from PIL import Image

    im = _from_array(image, "image array")
    scale = rng.uniform(0.6, 0.9)
    im = im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))), Image.Resampling.BILINEAR)
    left, top, right, bottom = rng.uniform(0.0, 0.06, 4)
    w, h = im.size
    im = im.crop((int(left * w), int(top * h), w - int(right * w), h - int(bottom * h)))
    x = np.asarray(im, dtype=np.float32) + rng.normal(0.0, 8.0, (im.height, im.width, 3))
    im = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(40, 71)))
    buf.seek(0)
    with Image.open(buf) as out:
        return np.asarray(out.convert("RGB"))


class ImageIndex:
    """Labelled images searchable by similarity. ``search`` only reads arrays, so it is thread-safe."""

    def __init__(self, entries: list[tuple[str, ImageInput]], corpus: Corpus | None = None, name: str = "images"):
        if not entries:
            raise VerirlError(f"{name}: no images to index")
        self.name = name
        self.corpus = corpus
        self.titles = [title for title, _ in entries]
        self.features = np.stack([image_feature(img, _label(img, title)) for title, img in entries])

    def __len__(self) -> int:
        return len(self.titles)

    @classmethod
    def flags(cls, corpus: Corpus | None = None) -> ImageIndex:
        """The 195 country flags, titled with their country's ``wiki-vital`` article."""
        from verirl.search.flags import flag_names, flag_title, load_flag

        return cls([(flag_title(n), load_flag(n)) for n in flag_names()], corpus, name="flags")

    @classmethod
    def from_jsonl(cls, path: str | Path, corpus: Corpus | None = None) -> ImageIndex:
        """A user collection: ``{"image": path relative to the file, "title": str}`` per line."""
        path = Path(path)
        entries: list[tuple[str, ImageInput]] = []
        for n, row in read_string_rows(path, ("image", "title"), "image collection"):
            image = path.parent / row["image"]
            if not image.is_file():
                raise VerirlError(f"{path}:{n}: {image}: no such image file")
            entries.append((row["title"].strip(), image))
        if not entries:
            raise VerirlError(f"{path}: the image collection is empty")
        return cls(entries, corpus, name=str(path))

    def search(self, image: ImageInput, k: int = 3) -> list[Hit]:
        """The ``k`` most similar labelled images' titles (distinct), best first, score = cosine similarity.

        The hit's text is the title's corpus passage when the index has a corpus (else "").
        """
        if k < 1:
            return []
        scores = self.features @ image_feature(image)
        hits: list[Hit] = []
        seen: set[str] = set()
        for i in np.argsort(-scores, kind="stable"):
            title = self.titles[i]
            if title in seen:
                continue
            seen.add(title)
            passage = self.corpus.get(title) if self.corpus is not None else None
            hits.append(Hit(title, passage.text if passage else "", float(scores[i])))
            if len(hits) == k:
                break
        return hits


def _label(image: ImageInput, title: str) -> str:
    return str(image) if isinstance(image, (str, Path)) else f"image of {title!r}"
