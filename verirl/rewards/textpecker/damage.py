"""Glyph damage for TextPecker's synthesis engine: every kind of structural anomaly a text-to-image model makes.

Paper (TextPecker, arXiv 2602.20903): generators' text shows *distortion, blurriness, misalignment* besides missing
and extra strokes; its engine edits strokes (delete, add, self-swap; :func:`stroke_edit`, kept from
:mod:`.synth`). The other kinds and how each is drawn are our design (docs/textpecker.md):

=========== ===========================================================================================
``strokes``  the paper's stroke edits (delete / add borrowed / swap pieces; partial erasure)
``missing``  erased parts of a glyph: a band at any angle, a blob, or several fragments
``spurious`` a stray stroke (line or arc, the glyph's stroke width) through the glyph, within its own columns
``distort``  geometric distortion of the glyph alone: strong shear, sine warp or elastic field
``blur``     local Gaussian or motion blur (smear) of the glyph's box (applied to pixels, after rendering)
``misalign`` the glyph shifted off the baseline, rotated or scaled about its centre
``fuse``     the glyph pushed into its left neighbour so the two overlap (both are labelled)
``mirror``   the glyph flipped left-right (mirror-symmetric glyphs and b/d/p/q are not mirrored)
=========== ===========================================================================================

Mask-domain kinds take the glyph's boolean mask (line-sized) and return the damaged mask; a damage that changes
less than :data:`MIN_CHANGE` of the glyph's ink is retried or topped up (erasures; a second stray stroke for
``spurious``), so that every label is a visible flaw.
"""

from __future__ import annotations

import math
import random

import numpy as np

DAMAGE_TYPES = ("strokes", "missing", "spurious", "distort", "blur", "misalign", "fuse", "mirror")
MASK_TYPES = ("strokes", "missing", "spurious", "distort", "misalign", "mirror")  # drawn on the glyph mask
MIN_CHANGE = 0.15  # a damaged glyph differs from the clean one in at least this share of its ink
NO_MIRROR = set("bdpqBDPQ")  # their mirror image is another letter


def glyph_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a mask's ink, None when it has none."""
    ys, xs = np.nonzero(mask)
    return (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1) if len(ys) else None


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    box = glyph_box(mask)
    if box is None:
        raise ValueError("a glyph mask with no ink cannot be damaged")
    return box


def visible_change(out: np.ndarray, mask: np.ndarray) -> int:
    """Pixels of ink added or removed beyond a one-pixel tolerance (a glyph shifted by a pixel, or the mirror image
    of a symmetric one, is not a visible change)."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    grown_mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    grown_out = cv2.dilate(out.astype(np.uint8), kernel).astype(bool)
    return int((out & ~grown_mask).sum() + (mask & ~grown_out).sum())


def changed_enough(out: np.ndarray, mask: np.ndarray) -> bool:
    return visible_change(out, mask) >= MIN_CHANGE * max(1, mask.sum())


def stroke_width(mask: np.ndarray) -> int:
    """Typical stroke width of a glyph: twice the median distance-to-background over its ink."""
    import cv2

    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    inside = dist[mask]
    return max(1, round(2 * float(np.median(inside)))) if inside.size else 1


# ------------------------------------------------------------------------- strokes (the paper's edits)

EDITS = ("delete", "add", "swap", "erase")


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
        if changed_enough(out, mask):
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


# ---------------------------------------------------------------------------------------------------- missing


def erase_part(mask: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    """Erase a band (any angle), a blob (ellipse) or 2-4 fragments of the glyph."""
    import cv2

    y0, y1, x0, x1 = _box(mask)
    h, w = y1 - y0, x1 - x0
    holes = np.zeros(mask.shape, np.uint8)
    kind = rng.choice(("band", "blob", "fragments"))
    if kind == "band":
        angle = rng.uniform(0, math.pi)
        cy, cx = rng.uniform(y0 + 0.2 * h, y1 - 0.2 * h), rng.uniform(x0 + 0.2 * w, x1 - 0.2 * w)
        reach = max(h, w)
        dy, dx = math.sin(angle) * reach, math.cos(angle) * reach
        thickness = max(2, round(rng.uniform(0.2, 0.4) * min(h, w) + 1))
        p, q = (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy))
        cv2.line(holes, p, q, 1, thickness)
    elif kind == "blob":
        centre = (round(rng.uniform(x0, x1)), round(rng.uniform(y0, y1)))
        axes = (max(2, round(rng.uniform(0.25, 0.45) * w)), max(2, round(rng.uniform(0.2, 0.4) * h)))
        cv2.ellipse(holes, centre, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    else:
        for _ in range(rng.randint(2, 4)):
            centre = (round(rng.uniform(x0, x1)), round(rng.uniform(y0, y1)))
            r = max(2, round(rng.uniform(0.14, 0.24) * max(h, w)))
            cv2.circle(holes, centre, r, 1, -1)
    return mask & ~holes.astype(bool), kind


# --------------------------------------------------------------------------------------------------- spurious


STRAY_MARGIN = 0.2  # a stray stroke may reach this share of the glyph's size (box height or width) past its box


def add_stray_stroke(mask: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    """Draw a line through the glyph (its middle inside the glyph's box) or an arc centred in it, of the glyph's stroke
    width, kept to the glyph's own columns (its box widened by :data:`STRAY_MARGIN`): ink drawn over a neighbour would
    sit on a character labelled clean."""
    import cv2

    y0, y1, x0, x1 = _box(mask)
    h, w = y1 - y0, x1 - x0
    width = stroke_width(mask)
    ink = np.zeros(mask.shape, np.uint8)
    if rng.random() < 0.6:
        kind = "line"
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)  # the line's middle: through the glyph, not beside it
        half, angle = rng.uniform(0.35, 0.6) * max(h, w), rng.uniform(0, math.pi)
        dx, dy = half * math.cos(angle), half * math.sin(angle)
        cv2.line(ink, (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy)), 1, width)
    else:
        kind = "arc"
        centre = (round(rng.uniform(x0, x1)), round(rng.uniform(y0, y1)))
        axes = (max(2, round(rng.uniform(0.3, 0.6) * w)), max(2, round(rng.uniform(0.2, 0.5) * h)))
        start = rng.uniform(0, 360)
        cv2.ellipse(ink, centre, axes, 0, start, start + rng.uniform(90, 200), 1, width)
    margin = max(1, round(STRAY_MARGIN * max(h, w)))
    ink[:, : max(0, x0 - margin)] = 0
    ink[:, x1 + margin :] = 0
    return mask | ink.astype(bool), kind


# -------------------------------------------------------------------------------------------- distort, misalign


def _warp_affine(mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    import cv2

    out = cv2.warpAffine(mask.astype(np.uint8) * 255, matrix, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_LINEAR)
    return out > 127


def _about_centre(mask: np.ndarray, linear: np.ndarray, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The 2x3 affine matrix applying ``linear`` about the glyph's box centre, then ``shift`` (dx, dy)."""
    y0, y1, x0, x1 = _box(mask)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    offset = centre - linear @ centre + np.array(shift)
    return np.hstack([linear, offset[:, None]]).astype(np.float32)


def distort(mask: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    """Shear, sine warp or an elastic displacement field, on the glyph alone."""
    import cv2

    y0, y1, x0, x1 = _box(mask)
    h, w = y1 - y0, x1 - x0
    kind = rng.choice(("shear", "wave", "elastic"))
    if kind == "shear":
        sx, sy = rng.choice((-1, 1)) * rng.uniform(0.35, 0.7), rng.uniform(-0.2, 0.2)
        return _warp_affine(mask, _about_centre(mask, np.array([[1.0, sx], [sy, 1.0]]))), kind
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float32)
    if kind == "wave":
        amp, period = rng.uniform(0.12, 0.22) * max(h, w), rng.uniform(0.6, 1.2) * h
        phase = rng.uniform(0, 2 * math.pi)
        if rng.random() < 0.5:
            xx = xx + amp * np.sin(2 * math.pi * yy / period + phase)
        else:
            yy = yy + amp * np.sin(2 * math.pi * xx / period + phase)
    else:
        grid = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 0.18 * max(h, w), (2, 4, 4)).astype(np.float32)
        field = [np.zeros(mask.shape, np.float32) for _ in range(2)]
        for k in range(2):
            field[k][y0:y1, x0:x1] = cv2.resize(grid[k], (w, h), interpolation=cv2.INTER_CUBIC)
            field[k] = cv2.GaussianBlur(field[k], (0, 0), max(1.0, 0.1 * max(h, w)))
        xx, yy = xx + field[0], yy + field[1]
    out = cv2.remap(mask.astype(np.uint8) * 255, xx, yy, cv2.INTER_LINEAR)
    return out > 127, kind


def misalign(mask: np.ndarray, rng: random.Random, room: tuple[int, int] | None = None) -> tuple[np.ndarray, str]:
    """Shift the glyph off the baseline (within ``room`` = free pixels above, below), rotate or scale it."""
    y0, y1, x0, x1 = _box(mask)
    h = y1 - y0
    kind = rng.choice(("shift", "rotate", "scale"))
    if kind == "shift":
        up, down = room if room is not None else (y0, mask.shape[0] - y1)
        direction = rng.choice((-1, 1)) if min(up, down) > 0.25 * h else (-1 if up > down else 1)
        dy = direction * min(rng.uniform(0.25, 0.45) * h, up if direction < 0 else down)
        return _warp_affine(mask, _about_centre(mask, np.eye(2), (0.0, dy))), kind
    if kind == "rotate":
        angle = math.radians(rng.choice((-1, 1)) * rng.uniform(20, 45))
        c, s = math.cos(angle), math.sin(angle)
        return _warp_affine(mask, _about_centre(mask, np.array([[c, -s], [s, c]]))), kind
    factor = rng.uniform(0.5, 0.65) if rng.random() < 0.5 else rng.uniform(1.35, 1.5)
    return _warp_affine(mask, _about_centre(mask, np.eye(2) * factor)), kind


def mirror(mask: np.ndarray) -> np.ndarray:
    y0, y1, x0, x1 = _box(mask)
    out = mask.copy()
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1][:, ::-1]
    return out


# ------------------------------------------------------------------------------------------------- dispatch


def damage_mask(
    kind: str,
    ch: str,
    mask: np.ndarray,
    donor: np.ndarray | None,
    rng: random.Random,
    room: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Damage a glyph mask with ``kind`` (one of :data:`MASK_TYPES`); returns the mask and what was applied
    (``kind:variant`` names). A mirror of a symmetric glyph, or any damage that changes too little, is retried and
    at last topped up with erasures (a stray stroke with another stray stroke). ``donor``: another character's mask
    at the same place, which only the stroke edits borrow from."""
    if not mask.any():
        return mask, []
    if kind == "strokes":
        out, applied = edit_glyph(mask, np.zeros_like(mask) if donor is None else donor, rng)
        return out, [f"strokes:{name}" for name in applied]
    out, applied = mask, []
    for attempt in range(4):
        if kind == "mirror" and (ch in NO_MIRROR or attempt > 0):  # mirror-symmetric or a mirror pair: erase instead
            kind = "missing"
        if kind == "missing":
            out, variant = erase_part(mask, rng)
        elif kind == "spurious":
            out, variant = add_stray_stroke(mask, rng)
        elif kind == "distort":
            out, variant = distort(mask, rng)
        elif kind == "misalign":
            out, variant = misalign(mask, rng, room)
        else:
            out, variant = mirror(mask), "flip"
        applied = [f"{kind}:{variant}"]
        if changed_enough(out, mask):
            return out, applied
    while not changed_enough(out, mask) and len(applied) < 8:
        if kind == "spurious":  # a second stray stroke: the damage stays added ink only
            out = out | add_stray_stroke(mask, rng)[0]
            applied.append("spurious:topup")
        else:
            out = out & erase_part(mask, rng)[0]
            applied.append("missing:topup")
    return out, applied


def blur_region(pixels: np.ndarray, box: tuple[int, int, int, int], size: int, rng: random.Random) -> str:
    """Blur (Gaussian) or smear (motion blur) one glyph's box of an (H, W, 3) float image in place."""
    import cv2

    y0, y1, x0, x1 = box
    m = max(2, size // 8)
    y0, y1, x0, x1 = max(0, y0 - m), min(pixels.shape[0], y1 + m), max(0, x0 - m), min(pixels.shape[1], x1 + m)
    region = pixels[y0:y1, x0:x1]
    if rng.random() < 0.5:
        sigma = rng.uniform(0.07, 0.13) * size
        pixels[y0:y1, x0:x1] = cv2.GaussianBlur(region, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        return "blur:gaussian"
    length = max(3, round(rng.uniform(0.25, 0.45) * size))
    kernel = np.zeros((length, length), np.float32)
    angle = rng.uniform(0, math.pi)
    c = (length - 1) / 2
    d = (c * math.cos(angle), c * math.sin(angle))
    cv2.line(kernel, (round(c - d[0]), round(c - d[1])), (round(c + d[0]), round(c + d[1])), 1.0, 1)
    pixels[y0:y1, x0:x1] = cv2.filter2D(region, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)
    return "blur:smear"
