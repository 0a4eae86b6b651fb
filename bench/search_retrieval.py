"""Speed and quality of the search agent's retrieval: hybrid vs BM25 vs dense text search, reverse image search.

Text: the full ``wiki-vital`` corpus (10,033 passages). The first run encodes it with MiniLM — about 5 minutes on two
CPU cores — and caches the embeddings (``cache_dir()/search/``); later runs load them in a second. The queries are
made from passages with a known answer: a passage's first sentence with the words of its title removed (the query
describes the subject without naming it) and then a random 30 % of the remaining words dropped, at most 20 words —
a crude paraphrase, so recall@3 here is a relative figure between modes, not a claim about real questions.

Images: every built-in flag, distorted twice (:func:`verirl.search.image_index.distort`: 60-90 % resize, a crop of up
to 6 % per side, noise, JPEG quality 40-70), searched among all 195 flags.

    python bench/search_retrieval.py                 # 200 queries, full corpus
    python bench/search_retrieval.py --limit 500     # first 500 passages (quick)

Prints ``first_build_s=`` (or ``embeddings=cached``); per mode (``hybrid`` is the RRF fusion, ``hybrid-convex``
the convex one) ``retrieval_ms_p50=``, ``retrieval_ms_p95=`` and ``recall@3=``; the hybrid latency through the HTTP
service (``service_ms_p50=``, ``service_ms_p95=``); and the image ``top1=``.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import threading
import time


def make_queries(corpus, n: int, seed: int) -> list[tuple[str, str]]:
    """(query, target title) pairs: first sentences, title words removed, 30 % of the other words dropped."""
    rng = random.Random(seed)
    pool = [p for p in corpus.passages if len(p.text) >= 120]
    queries = []
    for p in rng.sample(pool, min(n, len(pool))):
        sentence = re.split(r"(?<=[.!?])\s+", p.text, maxsplit=1)[0]
        sentence = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", sentence)
        title_words = {w.lower() for w in re.findall(r"\w+", p.title)}
        words = [w for w in re.findall(r"[\w'-]+", sentence) if w.lower() not in title_words]
        kept = [w for w in words if rng.random() >= 0.3][:20]
        if len(kept) >= 3:
            queries.append((" ".join(kept), p.title))
    return queries


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="wiki-vital")
    parser.add_argument("--limit", type=int, default=None, help="index only the first N passages")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from verirl.search.corpus import load_corpus
    from verirl.search.flags import flag_names, flag_title, load_flag
    from verirl.search.image_index import ImageIndex, distort
    from verirl.search.service import RemoteRetriever, make_server
    from verirl.search.text_index import MODES, TextIndex, embeddings_path

    corpus = load_corpus(args.corpus)
    if args.limit:
        corpus = corpus.head(args.limit)
    cached = embeddings_path(corpus).is_file()
    start = time.perf_counter()
    index = TextIndex(corpus)
    build_s = time.perf_counter() - start
    print(
        f"passages={len(corpus)} index_build_s={build_s:.1f} "
        + ("embeddings=cached" if cached and not index.embeddings_built else f"first_build_s={build_s:.1f}")
    )

    queries = make_queries(corpus, args.queries, args.seed)
    for q, _ in queries[:5]:  # warm up (loads the encoder for dense queries)
        index.search(q, 3, mode="hybrid")
    print(f"queries={len(queries)} e.g. {queries[0][0]!r} -> {queries[0][1]!r}")
    convex = TextIndex(corpus, fusion="convex")  # the same embeddings (cached), the other fusion
    runs = [(mode, index) for mode in MODES] + [("hybrid-convex", convex)]
    for mode, searcher in runs:
        times, found = [], 0
        for q, target in queries:
            t0 = time.perf_counter()
            hits = searcher.search(q, 3, mode=mode.split("-")[0])
            times.append((time.perf_counter() - t0) * 1000)
            found += target in [h.title for h in hits]
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        recall = f"{found / len(queries):.3f} ({found}/{len(queries)})"
        print(f"mode={mode} retrieval_ms_p50={p50:.1f} retrieval_ms_p95={p95:.1f} recall@3={recall}")

    images = ImageIndex.flags(corpus)
    server = make_server("127.0.0.1", 0, index, images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    remote = RemoteRetriever(server.url)
    times = []
    for q, _ in queries:
        t0 = time.perf_counter()
        remote.text_search(q, 3)
        times.append((time.perf_counter() - t0) * 1000)
    server.shutdown()
    server.server_close()
    print(f"mode=hybrid service_ms_p50={statistics.median(times):.1f} service_ms_p95={percentile(times, 0.95):.1f}")

    rng = np.random.default_rng(args.seed)
    names = flag_names()
    trials = [(flag_title(n), distort(load_flag(n), rng)) for n in names for _ in range(2)]
    times, correct = [], 0
    for title, image in trials:
        t0 = time.perf_counter()
        hits = images.search(image, 1)
        times.append((time.perf_counter() - t0) * 1000)
        correct += hits[0].title == title
    print(
        f"images={len(images)} distorted={len(trials)} top1={correct / len(trials):.3f} ({correct}/{len(trials)})"
        f" image_ms_p50={statistics.median(times):.1f}"
    )


if __name__ == "__main__":
    main()
