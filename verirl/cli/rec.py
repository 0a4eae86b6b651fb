"""``verirl rec eval`` / ``verirl rec recommend``: generative recommenders on MovieLens-100k (docs/recommendation.md).

    verirl rec eval --model DIR [--n-eval 1000] [--beams 10]     one summary line: ndcg@1=... hr@10=... users_per_s=...
    verirl rec eval --baseline mostpop                           the same figures for MostPop
    verirl rec recommend --model DIR --history "Heat (1995)" ... the top-K titles as a JSON list

``--model``: a ``trainer: vrec`` output (any stage folder) or any causal-LM folder fine-tuned on the ml-100k prompts.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Sequence
from typing import Any

from verirl.errors import VerirlError


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    rec = subparsers.add_parser("rec", parents=list(parents), help="generative recommendation: evaluate, recommend")
    rsub = rec.add_subparsers(dest="rec_command", metavar="ACTION")
    ev = rsub.add_parser("eval", parents=list(parents), help="NDCG/HR@1,5,10 on held-out ml-100k cases (one line)")
    ev.add_argument("--baseline", choices=("mostpop",), default=None, help="a non-learned baseline instead of --model")
    ev.add_argument("--n-eval", type=int, default=1000, help="held-out cases (a seeded sample of the test split)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the held-out sample (0: the benchmark's cases)")
    ev.add_argument("--held-out", choices=("test", "valid"), default="test")
    ev.add_argument("--unconstrained", action="store_true", help="also report greedy free decoding's invalid rate")
    rc = rsub.add_parser("recommend", parents=list(parents), help="the top-K titles for a history, as JSON")
    rc.add_argument("--history", nargs="+", required=True, metavar="TITLE", help='watched titles, "Heat (1995)"')
    for p in (ev, rc):
        p.add_argument("--model", default=None, help="a vrec output folder (or a stage folder) or an LM folder")
        p.add_argument("--beams", type=int, default=10, help="beams = length of the ranked list")
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--length-penalty", type=float, default=1.0)
        p.add_argument("--bf16", action="store_true", help="bf16 autocast (about 2x faster on AVX512-BF16 CPUs)")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise VerirlError(f"--{name}: expected a positive number, got {value}")


def _data_options(model_dir: str | None) -> dict[str, Any]:
    """How the model's catalogue and prompts were built (a vrec folder records it; otherwise the defaults)."""
    from verirl.rec.vrec import is_vrec_dir, read_config

    options = read_config(model_dir).data if model_dir and is_vrec_dir(model_dir) else {}
    return {"window": int(options.get("window", 10)), "min_rating": options.get("min_rating")}


def _catalogue(model_dir: str | None) -> Any:
    from verirl.rec.movielens import load_movielens

    options = _data_options(model_dir)
    return load_movielens(options["window"], options["min_rating"])


def _history_titles(ml: Any, titles: list[str]) -> list[str]:
    known = ml.by_title()
    for title in titles:
        if title not in known:
            close = difflib.get_close_matches(title, list(known), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise VerirlError(f'--history: {title!r} is not a MovieLens-100k title ("Title (Year)"){hint}')
    return titles


def cmd_rec(args: argparse.Namespace) -> int:
    if args.rec_command not in ("eval", "recommend"):
        raise VerirlError("rec: expected an action: eval | recommend")
    _positive("beams", args.beams)
    _positive("batch-size", args.batch_size)
    if args.rec_command == "eval":
        return _eval(args)
    if not args.model:
        raise VerirlError("--model: required (a vrec output folder or an LM folder)")
    from verirl.rec.evaluate import constrained_generator, load_recommender, rank_titles
    from verirl.rec.tasks import prompt_for

    ml = _catalogue(args.model)
    history = _history_titles(ml, args.history)[-10:]
    model, tokenizer = load_recommender(args.model)
    generator = constrained_generator(model, tokenizer, ml.titles(), 1, args.bf16)
    print(json.dumps(rank_titles(generator, [prompt_for(history)], args.beams, args.length_penalty)[0]))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from verirl.rec.metrics import most_popular, ranking_metrics, summary_line
    from verirl.rec.tasks import ml_100k, sample_of

    _positive("n-eval", args.n_eval)
    if (args.model is None) == (args.baseline is None):
        raise VerirlError("rec eval: expected exactly one of --model DIR or --baseline mostpop")
    ml = _catalogue(args.model)
    if args.baseline == "mostpop":
        cases = sample_of(ml.test if args.held_out == "test" else ml.valid, args.n_eval, args.seed)
        top = most_popular([s.target for s in ml.train], args.beams)
        metrics = ranking_metrics([top] * len(cases), [s.target for s in cases])
        print(f"{summary_line(metrics)} cases={len(cases)}")
        return 0
    from verirl.rec.evaluate import evaluate_ranking, invalid_title_rate, load_recommender

    _, rows = ml_100k(
        n_train=1, n_eval=args.n_eval, seed=args.seed, held_out=args.held_out, **_data_options(args.model)
    )
    model, tokenizer = load_recommender(args.model)
    result = evaluate_ranking(
        model, tokenizer, rows, ml.titles(), args.beams, args.batch_size, args.length_penalty, args.bf16
    )
    extra = ""
    if args.unconstrained:
        extra = f" invalid_rate={invalid_title_rate(model, tokenizer, rows, ml.titles(), args.batch_size):.4f}"
    metrics = {k: v for k, v in result.items() if "@" in k}
    print(f"{summary_line(metrics)} cases={result['cases']} users_per_s={result['users_per_s']}{extra}")
    return 0
