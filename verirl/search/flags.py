"""Country flags for the image-search task: read from the installed ``flagpy`` wheel without importing it.

``flagpy`` 1.0.3 (MIT) ships ``flagpy/flag_df.csv`` (country -> ``flags/<Name>.pkl``) and 195 pickled numpy arrays,
one RGB image per country. Importing ``flagpy`` fails offline (it downloads at import time), so verirl locates the
package with :func:`importlib.util.find_spec` (which does not run its ``__init__``) and reads the files itself.

Our choices:

* A *flag name* is the pickle's file stem, e.g. ``"Antigua_And_Barbuda"`` or ``"Georgia_(Country)"``.
* Pickles are loaded with a restricted unpickler that admits only what numpy needs to rebuild an array
  (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar``) and refuses every other global, so a tampered file cannot
  run code.
* :func:`flag_title` maps a flag name to the title of the country's article in the built-in ``wiki-vital`` corpus
  (rules plus a small alias table; every one of the 195 maps to a corpus title).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from verirl.errors import VerirlError

INSTALL_HINT = "install the search extra: pip install 'verirl[search]' (flagpy is installed with --no-deps)"

# Flag names whose corpus title the rules below do not produce.
TITLE_ALIASES: dict[str, str] = {
    "East_Timor": "Timor-Leste",
    "Georgia_(Country)": "Georgia (country)",
}
# Corpus titles that keep a leading "The".
_KEEP_THE = {"The Bahamas", "The Gambia"}
_LOWER_WORDS = {"And", "Of", "The"}


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals numpy's array pickles refer to, under both the numpy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global raises :class:`pickle.UnpicklingError`."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if ArrayUnpickler._allowed is None:
            ArrayUnpickler._allowed = _numpy_globals()
        try:
            return ArrayUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: only numpy arrays") from None


def load_array(data: bytes) -> np.ndarray:
    """A numpy array from pickle bytes, through :class:`ArrayUnpickler`."""
    obj = ArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, np.ndarray):
        raise pickle.UnpicklingError(f"expected a numpy array, got {type(obj).__name__}")
    return obj


def flagpy_dir() -> Path:
    """The installed ``flagpy`` package directory (found without importing it)."""
    spec = importlib.util.find_spec("flagpy")
    if spec is None or not spec.submodule_search_locations:
        raise VerirlError(f"the flag images need the flagpy package: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations)))
    if not (path / "flag_df.csv").is_file():
        raise VerirlError(f"{path}: flag_df.csv is missing from the installed flagpy; reinstall it")
    return path


@lru_cache(maxsize=1)
def _flag_files() -> dict[str, Path]:
    root = flagpy_dir()
    files: dict[str, Path] = {}
    with (root / "flag_df.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rel = Path(row.get("flag") or "")
            if rel.suffix == ".pkl":
                files[rel.stem] = root / rel
    if not files:
        raise VerirlError(f"{root / 'flag_df.csv'}: lists no flags; reinstall flagpy")
    return files


def flag_names() -> list[str]:
    """The flag names (pickle file stems), sorted."""
    return sorted(_flag_files())


def load_flag(name: str) -> np.ndarray:
    """The flag of ``name`` as an (H, W, 3) uint8 RGB array."""
    path = _flag_files().get(name)
    if path is None:
        raise VerirlError(f"unknown flag {name!r}: expected one of flag_names(), e.g. 'France' or 'The_Gambia'")
    try:
        arr = load_array(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise VerirlError(f"{path}: cannot load the flag ({exc})") from None
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise VerirlError(f"{path}: expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        scale = 255.0 if arr.dtype.kind == "f" and arr.max() <= 1.0 else 1.0
        arr = np.clip(arr.astype(np.float64) * scale, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def flag_title(name: str) -> str:
    """The country's corpus title: ``"Antigua_And_Barbuda"`` -> ``"Antigua and Barbuda"``."""
    if name in TITLE_ALIASES:
        return TITLE_ALIASES[name]
    words = name.replace("_", " ").split()
    title = " ".join(w.lower() if i and w in _LOWER_WORDS else w for i, w in enumerate(words))
    if title.startswith("The ") and title not in _KEEP_THE:
        title = title[4:]
    return title
