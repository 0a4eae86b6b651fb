"""The search agent's speed, measured side by side in one run (this machine is noisy; ratios only):

* ``retrieval_ms_p50=`` — hybrid text search (BM25 + MiniLM, RRF) over the full ``wiki-vital`` corpus, with the
  held-out 2-hop questions as queries (target <= 20 ms); and ``dense_query_ms_p50``: a query's dense similarities by
  the shipped path vs sentence-transformers' ``encode``, interleaved;
* ``episodes_per_s_vllm_vs_hf=`` — whole planner episodes (greedy, every turn and the tools) with the planner's turns
  on a vLLM engine (``EnginePlanner``, token ids in and out) vs transformers ``generate`` (``Planner``), same
  questions, same model, engine start-up excluded and printed (target >= 3);
* the GRPO step's time split — from a short ``verirl train`` run of the search recipe: generation, tools, answerer
  and the rest (the update), from the run's metrics (``search/rollout_seconds``, ``search/tool_seconds``,
  ``search/answerer_seconds``, ``step_time``).

    python bench/search_agent.py --model runs/search-agent-sft [--episodes 16] [--skip-vllm] [--skip-grpo]
    python bench/search_agent.py --episodes 0 --skip-grpo      # retrieval only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def retrieval(n: int) -> None:
    from verirl.search.service import open_retriever
    from verirl.search.tasks import search_2hop

    retriever = open_retriever(None)
    _, rows = search_2hop(0, n)
    retriever.text_search("warm up", 3)
    times = []
    for row in rows:
        start = time.perf_counter()
        retriever.text_search(row["question"], 3)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[int(0.95 * (len(times) - 1))]
    print(
        f"retrieval_ms_p50={statistics.median(times):.2f} retrieval_ms_p95={p95:.2f} queries={len(times)}", flush=True
    )
    query_vectors(retriever.text_index._dense_index(), [row["question"] for row in rows])


def query_vectors(embeddings: object, queries: list[str]) -> None:
    """A query's dense-similarity time, the shipped path (the model's modules) vs sentence-transformers' ``encode``
    (its per-call device scan and ``eval()``), interleaved on the same queries."""
    from verirl.search.text_index import _encoder, _one_thread, query_similarities

    model = _encoder()

    def with_encode(query: str) -> None:
        with _one_thread(True):
            q = model.encode([query], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]
            embeddings @ q  # type: ignore[operator]

    times: dict[str, list[float]] = {"encode": [], "shipped": []}
    for query in queries:
        for name, call in (("encode", with_encode), ("shipped", lambda q: query_similarities(embeddings, q))):
            start = time.perf_counter()
            call(query)
            times[name].append((time.perf_counter() - start) * 1000)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    print(f"dense_query_ms_p50 encode={p50['encode']:.2f} shipped={p50['shipped']:.2f} "
          f"shipped_vs_encode={p50['shipped'] / p50['encode']:.2f}", flush=True)  # fmt: skip


def episodes(model: str, n: int, skip_vllm: bool) -> None:
    from verirl.models import load_model
    from verirl.search.agent import EnginePlanner, Planner, run_episodes
    from verirl.search.answerer import build_answerer
    from verirl.search.environment import environment_factory
    from verirl.search.service import open_retriever
    from verirl.search.spec import planner_prompt, prepare_tokenizer
    from verirl.search.tasks import search_mix

    _, rows = search_mix(0, n, seed=1)
    prompts = [planner_prompt(r["question"], bool(r["query_image"])) for r in rows]
    answerer = build_answerer("smollm2-135m-instruct", "smollm2-135m-instruct")
    factory = environment_factory(open_retriever(None), answerer)
    hf_model, tok, source = load_model(model)
    prepare_tokenizer(tok)

    def run(planner) -> tuple[float, list]:
        start = time.time()
        results = []
        for i in range(0, n, 8):
            batch = rows[i : i + 8]
            results += run_episodes(planner, [factory() for _ in batch], batch, prompts[i : i + 8], 3)
        return time.time() - start, results

    hf_s, hf_results = run(Planner(hf_model, tok))
    calls = sum(len(r.episode.calls) for r in hf_results)
    print(f"hf_episodes={n} hf_seconds={hf_s:.1f} hf_episodes_per_s={n / hf_s:.3f} tool_calls={calls}", flush=True)
    if skip_vllm:
        return
    from verirl.generators.vllm import EngineOptions, VLLMGenerator

    start = time.time()
    engine = VLLMGenerator(source.path, tok, EngineOptions(dtype="float32", kv_cache_gib=2))
    print(f"vllm_engine_start_s={time.time() - start:.1f}", flush=True)
    try:
        vllm_s, vllm_results = run(EnginePlanner(engine, tok))
    finally:
        engine.close()
    same = sum(
        [c.query for c in a.episode.calls] == [c.query for c in b.episode.calls]
        for a, b in zip(hf_results, vllm_results, strict=True)
    )
    print(f"vllm_seconds={vllm_s:.1f} vllm_episodes_per_s={n / vllm_s:.3f} same_queries_as_hf={same}/{n}")
    print(f"episodes_per_s_vllm_vs_hf={hf_s / vllm_s:.2f}", flush=True)


def grpo_split(model: str, steps: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="search-bench-"))
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "recipes" / "search-agent.yaml").read_text())
    recipe["model"] = model
    recipe["data"].update(n_train=8 * steps, n_eval=1)
    recipe["args"].update(max_steps=steps, logging_steps=1, save_strategy="no")
    recipe["eval"] = {"enabled": False}
    recipe["output_dir"] = str(root / "out")
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    verirl = str(Path(sys.executable).with_name("verirl"))
    done = subprocess.run([verirl, "train", str(path)], capture_output=True, text=True, env=env)
    if done.returncode:
        print(done.stderr[-2000:])
        raise SystemExit("the GRPO run failed")
    records = [json.loads(line) for line in (root / "out" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in records if "step_time" in r]
    for r in rows:
        rollout, tools = r.get("search/rollout_seconds", 0.0), r.get("search/tool_seconds", 0.0)
        answerer = r.get("search/answerer_seconds", 0.0)
        update = r["step_time"] - rollout - answerer
        print(
            f"grpo_step={r['step']} step_s={r['step_time']:.1f} generation_s={rollout - tools:.1f} "
            f"tools_s={tools:.2f} answerer_s={answerer:.1f} update_and_rest_s={update:.1f} "
            f"tool_calls_per_episode={r.get('tools/call_frequency', 0):.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the planner (a cold-started one ideally)")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--grpo-steps", type=int, default=2)
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--skip-grpo", action="store_true")
    args = parser.parse_args()
    retrieval(args.queries)
    if args.episodes > 0:
        episodes(args.model, args.episodes, args.skip_vllm)
    if not args.skip_grpo:
        grpo_split(args.model, args.grpo_steps)


if __name__ == "__main__":
    main()
