"""Verifiers of a recommended movie, for GRPO on the ``ml-100k`` task (docs/verifier_mixtures.md, "Recommendation").

A completion recommends the title on its first line (``"Heat (1995)"``); the row brings the target's item id
(``target``) and the user's recent items (``history``, JSON ids). All are deterministic (uncertainty 0) and entry
points of verirl in ``verirl.verifiers``:

* ``rec_exact``: 1 if the title is the target's, else 0 (the sparse reward: most groups score all 0);
* ``rec_genre``: Jaccard overlap of the title's genres with the target's (MovieLens genres);
* ``rec_cf``: 1 if the title's collaborative-filtering cluster is the target's (SVD of the training interactions,
  k-means; VRec's CF verifier's classes, arXiv 2603.07725, :mod:`verirl.rec.clusters`);
* ``rec_valid``: 1 if the title is in the catalogue (a constraint: an invented title gets the floor);
* ``rec_new``: 1 if the title is not one the user just watched (a constraint).

``rec_genre``, ``rec_cf`` and ``rec_new`` do not apply (None) to a title outside the catalogue. The set is our design
after VRec's verifiers (category and CF clusters) and the constraints of CGPO (arXiv 2409.20370). The catalogue and
its clusters load once per process, on first use (the clusters' MiniLM embeddings are cached on disk).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from verirl.rec.tasks import title_of_completion
from verirl.verifiers.base import Verdict


@functools.lru_cache(maxsize=4)
def _catalogue(window: int) -> Any:
    from verirl.rec.movielens import load_movielens

    return load_movielens(window)


@functools.lru_cache(maxsize=4)
def _item_ids(window: int) -> dict[str, int]:
    """Catalogue title -> item id (built once: every sample of every call looks its title up)."""
    return _catalogue(window).by_title()


@functools.lru_cache(maxsize=4)
def _cf_clusters(window: int, n_cf: int, seed: int) -> dict[int, int]:
    from verirl.rec.clusters import build_clusters

    return build_clusters(_catalogue(window), n_cf=n_cf, seed=seed).labels["cf"]


class _RecVerifier:
    """The title a completion recommends, resolved against the catalogue; the row's target and history."""

    def __init__(self, window: int = 10):
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window: expected an integer >= 1, got {window!r}")
        self.window = window

    def item_of(self, completion: Any) -> int | None:
        return _item_ids(self.window).get(title_of_completion(str(completion)))

    @staticmethod
    def target_of(ctx: dict[str, Any]) -> int | None:
        target = ctx.get("target")
        return None if target is None else int(target)

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        raise NotImplementedError


class RecExact(_RecVerifier):
    """1 if the recommended title is the target's."""

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        target = self.target_of(ctx)
        if target is None:
            return Verdict(None, "no `target` column: not applicable")
        item = self.item_of(completion)
        return Verdict(float(item == target), "hit" if item == target else "miss")


class RecGenre(_RecVerifier):
    """Jaccard overlap of the recommended title's genres with the target's."""

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        target, item = self.target_of(ctx), self.item_of(completion)
        if target is None or item is None:
            return Verdict(None, "not a catalogue title, or no target")
        items = _catalogue(self.window).items
        mine, theirs = set(items[item].genres), set(items[target].genres)
        union = mine | theirs
        score = len(mine & theirs) / len(union) if union else 0.0
        return Verdict(score, f"genres {sorted(mine)} vs {sorted(theirs)}")


class RecCF(_RecVerifier):
    """1 if the recommended title is in the target's collaborative-filtering cluster."""

    def __init__(self, window: int = 10, n_cf: int = 25, seed: int = 0):
        super().__init__(window)
        if not isinstance(n_cf, int) or n_cf < 2:
            raise ValueError(f"n_cf: expected an integer >= 2, got {n_cf!r}")
        self.n_cf, self.seed = n_cf, seed

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        target, item = self.target_of(ctx), self.item_of(completion)
        if target is None or item is None:
            return Verdict(None, "not a catalogue title, or no target")
        cf = _cf_clusters(self.window, self.n_cf, self.seed)
        return Verdict(float(cf[item] == cf[target]), f"cf cluster {cf[item]} vs {cf[target]}")


class RecValid(_RecVerifier):
    """1 if the recommended title is in the catalogue."""

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        item = self.item_of(completion)
        return Verdict(float(item is not None), "in the catalogue" if item is not None else "not a catalogue title")


class RecNew(_RecVerifier):
    """1 if the recommended title is not in the user's recent history."""

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        item = self.item_of(completion)
        if item is None or ctx.get("history") is None:
            return Verdict(None, "not a catalogue title, or no history")
        history = ctx["history"]
        seen = set(json.loads(history) if isinstance(history, str) else history)
        return Verdict(float(item not in seen), "new" if item not in seen else "already watched")
