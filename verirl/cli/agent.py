"""``verirl agent ask`` / ``verirl agent eval``: run the search agent (docs/search_agent.md).

    verirl agent ask --model DIR [--image PATH] "question"            one JSON object: answer, turns, evidence
    verirl agent eval --model DIR --data FILE.jsonl|TASK [--baseline none|naive-rag|oracle]
                                                                     one JSON line per question, then a summary line

``--data`` is a question file (``{"question", "answers", "image"?, "evidence"?}`` lines) or a built-in task
(``search-2hop``, ``search-flags``, ``search-mix``: their held-out split).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError

TASK_SPLITS = ("search-2hop", "search-flags", "search-mix")


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    agent = subparsers.add_parser(
        "agent", parents=list(parents), help="run the search agent: ask a question, evaluate"
    )
    asub = agent.add_subparsers(dest="agent_command", metavar="ACTION")
    ask = asub.add_parser("ask", parents=list(parents), help="one question: prints the answer and the agent's turns")
    ask.add_argument("question")
    ask.add_argument("--image", default=None, help="an image that comes with the question (for image_search)")
    ev = asub.add_parser("eval", parents=list(parents), help="questions with gold answers: one line each + summary")
    ev.add_argument(
        "--data",
        required=True,
        help="a JSONL question file, or search-2hop | search-flags | search-mix (held out; NAME:train for training)",
    )
    ev.add_argument(
        "--baseline",
        choices=("none", "naive-rag", "oracle"),
        default=None,
        help="instead of the planner: the answerer alone, one search with the question, or the gold evidence",
    )
    ev.add_argument("--limit", type=int, default=None, help="the first N questions")
    ev.add_argument("--batch-size", type=int, default=8, help="episodes run together")
    ev.add_argument(
        "--keep-unsolved",
        default=None,
        metavar="FILE",
        help="write the questions this run did not solve to FILE (a question JSONL for `data: {builtin: search-file}`;"
        " with --baseline naive-rag: s3's filter)",
    )
    ev.add_argument(
        "--unsolved-by",
        choices=("accuracy", "fidelity"),
        default="accuracy",
        help="unsolved = answered wrong (accuracy) or gold evidence not all found (fidelity; questions without"
        " evidence are left out)",
    )
    for p in (ask, ev):
        p.add_argument("--model", default=None, help="the planner: a directory (a trained run), alias or Hub id")
        p.add_argument(
            "--answerer", default=None, help="the frozen answerer: model dir/alias/id or URL (default: the run's)"
        )
        p.add_argument("--retriever", default=None, help="URL of `verirl serve-retriever` (default: in process)")
        p.add_argument("--corpus", default="wiki-vital", help="wiki-vital or a JSONL corpus {title, text}")
        p.add_argument("--images", default="flags", help="flags or a JSONL image collection {image, title}")
        p.add_argument("--tools", default="text_search,image_search", help="comma-separated tools offered")
        p.add_argument("--max-turns", type=int, default=3)
        p.add_argument("--top-k", type=int, default=3)
        p.add_argument("--max-new-tokens", type=int, default=96, help="planner tokens per turn")
        p.add_argument("--dtype", default="float32")
        p.add_argument("--trust-remote-code", action="store_true", help="allow the models' own modelling code")
        p.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="how the planner generates its turns")


def run_answerer(model: str | None) -> str | None:
    """The answerer a verirl run was trained against (its recipe's ``environment.answerer``; ``base``: its model)."""
    if model is None:
        return None
    recipe = Path(model) / "recipe.yaml"
    if not recipe.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(recipe.read_text()) or {}
        env = data.get("environment") or {}
        answerer = env.get("answerer", "base") if isinstance(env, dict) else "base"
        base = data.get("model")
        base = base.get("name") if isinstance(base, dict) else base
        return str(base) if answerer == "base" else str(answerer)
    except (yaml.YAMLError, AttributeError):
        return None


def _check_models(planner: str | None, answerer: str) -> None:
    """A planner or answerer that names no model fails here, in one line (classify_model's error)."""
    from verirl.models import classify_model
    from verirl.search.answerer import is_url

    for flag, spec in (("--model", planner), ("--answerer", answerer)):
        if spec is not None and spec != "base" and not is_url(spec):
            try:
                classify_model(spec)
            except VerirlError as exc:
                raise VerirlError(f"{flag}: {exc}") from None


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(planner or None, environment factory, corpus for the oracle)."""
    from verirl.search.answerer import build_answerer
    from verirl.search.environment import SearchOptions, environment_factory
    from verirl.search.service import open_retriever
    from verirl.search.spec import check_environment_args

    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    check_environment_args(tools, args.max_turns, args.top_k)
    baseline = getattr(args, "baseline", None)
    if args.model is None and baseline is None:
        raise VerirlError("--model: required (the planner), unless --baseline is given")
    answerer_spec = args.answerer or run_answerer(args.model) or args.model
    if answerer_spec is None:
        raise VerirlError("--answerer: required with a baseline and no --model")
    _check_models(args.model, answerer_spec)  # before the retriever, whose index can take minutes to build
    retriever = open_retriever(args.retriever, args.corpus, args.images)
    answerer = build_answerer(answerer_spec, answerer_spec, args.dtype, trust_remote_code=args.trust_remote_code)
    factory = environment_factory(
        retriever, answerer, tools, SearchOptions(top_k=args.top_k, max_calls=args.max_turns)
    )
    planner = None
    if baseline is None:
        from verirl.models import load_model
        from verirl.search.agent import Planner
        from verirl.search.spec import prepare_tokenizer

        model, tokenizer, source = load_model(
            args.model, args.dtype, args.trust_remote_code, weights=args.backend == "hf"
        )
        prepare_tokenizer(tokenizer)
        if args.backend == "vllm":
            from verirl.generators.vllm import EngineOptions, VLLMGenerator
            from verirl.search.agent import EnginePlanner

            engine = VLLMGenerator(source.path, tokenizer, EngineOptions(dtype=args.dtype))
            planner = EnginePlanner(engine, tokenizer, max_new_tokens=args.max_new_tokens)
        else:
            planner = Planner(model, tokenizer, max_new_tokens=args.max_new_tokens)
    corpus = None
    if baseline == "oracle":
        from verirl.search.corpus import load_corpus

        text_index = getattr(retriever, "text_index", None)
        corpus = text_index.corpus if text_index is not None else load_corpus(args.corpus)
    return planner, factory, corpus


def _rows(data: str, limit: int | None) -> list[dict[str, Any]]:
    name, _, split = data.partition(":")
    if name in TASK_SPLITS:
        from verirl.data import get_task

        if split not in ("", "test", "train"):
            expected = f"{name}, {name}:test or {name}:train"
            raise VerirlError(f"--data: unknown split {split!r} of {name}: expected {expected}")
        if split == "train":  # shuffled with seed 0, as a recipe's `data:` with the default seed
            rows, _ = get_task(name)(n_train=limit, n_eval=0)
        else:
            _, rows = get_task(name)(n_train=0, n_eval=limit)
        return rows
    from verirl.search.questions import read_questions
    from verirl.search.tasks import as_row

    rows = [as_row(q) for q in read_questions(data)]
    return rows if limit is None else rows[:limit]


def cmd_agent(args: argparse.Namespace) -> int:
    from verirl.search.agent import run_baseline, run_episodes, summary
    from verirl.search.spec import planner_prompt

    if args.agent_command not in ("ask", "eval"):
        raise VerirlError("agent: expected an action: ask | eval")
    if args.agent_command == "ask":
        if args.image is not None and not Path(args.image).is_file():
            raise VerirlError(f"--image: no such file: {args.image}")
        rows = [{"question": args.question, "answers": [], "evidence": [], "query_image": args.image}]
    else:
        if args.limit is not None and args.limit < 1:
            raise VerirlError(f"--limit: expected a positive number, got {args.limit}")
        if args.batch_size < 1:
            raise VerirlError(f"--batch-size: expected a positive number, got {args.batch_size}")
        if args.keep_unsolved is not None and Path(args.keep_unsolved).exists():
            raise VerirlError(f"--keep-unsolved: {args.keep_unsolved} exists (never overwritten; name a new file)")
        rows = _rows(args.data, args.limit)
    planner, factory, corpus = _load(args)
    start = time.time()
    records = []
    batch_size = 1 if args.agent_command == "ask" else args.batch_size
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        if planner is None:
            results = run_baseline(args.baseline, factory(), batch, corpus)
        else:
            prompts = [planner_prompt(r["question"], bool(r.get("query_image"))) for r in batch]
            results = run_episodes(planner, [factory() for _ in batch], batch, prompts, args.max_turns)
        for result in results:
            record = result.record()
            if args.agent_command == "ask":
                record = {k: record[k] for k in ("question", "answer", "turns", "evidence", "final_note", "seconds")}
            else:
                record["baseline"] = args.baseline or "planner"
            records.append(record)
            print(json.dumps(record, ensure_ascii=False), flush=True)
    if args.agent_command == "eval":
        line = summary(records, time.time() - start)
        print(json.dumps(line), flush=True)
        print(
            f"accuracy={line['accuracy']} retrieval_fidelity={line['retrieval_fidelity']} "
            f"mean_tool_calls={line['mean_tool_calls']} invalid_call_rate={line['invalid_call_rate']}",
            file=sys.stderr,
        )
        if args.keep_unsolved is not None:
            _write_unsolved(Path(args.keep_unsolved), rows, records, args.unsolved_by)
    return 0


def unsolved(rows: list[dict[str, Any]], records: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """The question-file lines of the rows whose run was wrong (``accuracy``) or missed gold evidence (``fidelity``;
    rows without gold evidence are never kept then)."""
    out = []
    for row, record in zip(rows, records, strict=True):
        evidence = record["all_evidence"]  # None: the question has no gold evidence
        failed = not record["correct"] if by == "accuracy" else evidence is not None and not evidence
        if failed:
            line = {"question": row["question"], "answers": list(row["answers"]), "evidence": list(row["evidence"])}
            if row.get("query_image"):
                line["image"] = str(Path(row["query_image"]).resolve())  # absolute: valid wherever the file goes
            out.append(line)
    return out


def _write_unsolved(path: Path, rows: list[dict[str, Any]], records: list[dict[str, Any]], by: str) -> None:
    lines = unsolved(rows, records, by)
    if not lines:
        print(f"--keep-unsolved: every question was solved ({by}); {path} not written", file=sys.stderr)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
        if path.exists():  # appeared while the run went on: kept, the list goes beside it
            path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
        tmp.rename(path)
    except OSError as exc:  # the per-question lines are on stdout already: nothing of the run is lost
        raise VerirlError(f"--keep-unsolved: cannot write {path} ({exc.strerror or exc.__class__.__name__})") from None
    print(f"--keep-unsolved: {len(lines)} of {len(rows)} questions unsolved ({by}) written to {path}", file=sys.stderr)
