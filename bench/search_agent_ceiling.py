"""How far a better search planner could raise retrieval fidelity on the 2-hop questions: a ceiling from the data.

A 2-hop question names the hop-1 entity; the hop-2 title (the bridge) has to come from somewhere. Each question is
put in one of three buckets by where its hop-2 title appears in the gold hop-1 passage (case-insensitive substring):

* ``within`` — inside the first ``--chars`` characters, the part of each hit the planner reads (the recipe's
  ``max_result_chars``): a planner that reads the passage can name the bridge;
* ``beyond`` — later in the passage: readable only with a longer ``max_result_chars``;
* ``nowhere`` — not in the passage at all: the bridge must come from the planner's own knowledge (e.g. a city's
  country that its summary never names).

For each ``verirl agent eval`` JSONL given, the share of each bucket whose gold evidence the planner found, and the
ceiling: every ``within`` and ``beyond`` question solved, ``nowhere`` questions at the best rate any of the given
planners reached (a flawless reader that knows what these planners know).

    python bench/search_agent_ceiling.py EVAL.jsonl [EVAL2.jsonl ...] [--chars 200] [--data search-2hop]

Ends with ``ceiling_fidelity=X best_fidelity=X`` (the best of the given planners).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

BUCKETS = ("within", "beyond", "nowhere")


def bucket(hop1_text: str, hop2_title: str, chars: int) -> str:
    at = hop1_text.lower().find(hop2_title.lower())
    if at < 0:
        return "nowhere"
    return "within" if at + len(hop2_title) <= chars else "beyond"


def read_eval(path: str) -> dict[str, bool]:
    """question -> whether all its gold evidence titles were returned (the eval's ``all_evidence``)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        if not row.get("summary") and row.get("all_evidence") is not None:
            out[row["question"]] = row["all_evidence"] == 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evals", nargs="+", metavar="EVAL.jsonl", help="output of `verirl agent eval`")
    parser.add_argument("--chars", type=int, default=200, help="characters of each hit the planner reads")
    parser.add_argument("--data", default="search-2hop", help="the built-in task the evals ran on (held-out split)")
    args = parser.parse_args()

    from verirl.data import get_task
    from verirl.search.corpus import load_corpus

    runs = {path: read_eval(path) for path in args.evals}
    asked = set().union(*runs.values())
    _, rows = get_task(args.data)(n_train=0, n_eval=None)
    rows = [r for r in rows if r["question"] in asked and len(r.get("evidence") or []) >= 2]
    text = {p.title: p.text for p in load_corpus().passages}
    kinds: dict[str, list[dict[str, Any]]] = {k: [] for k in BUCKETS}
    for row in rows:
        kinds[bucket(text[row["evidence"][0]], row["evidence"][-1], args.chars)].append(row)

    print(f"{len(rows)} questions with 2 evidence titles; hop-2 title in the hop-1 passage, first {args.chars} chars:")
    best_rate = {k: 0.0 for k in BUCKETS}
    for kind in BUCKETS:
        line = f"  {kind:<8} {len(kinds[kind]):4d}"
        for path, found in runs.items():
            solved = sum(found.get(r["question"], False) for r in kinds[kind])
            rate = solved / len(kinds[kind]) if kinds[kind] else 0.0
            best_rate[kind] = max(best_rate[kind], rate)
            line += f"  {Path(path).stem}: {solved} ({rate:.2f})"
        print(line)
    fidelity = {path: sum(found.get(r["question"], False) for r in rows) / len(rows) for path, found in runs.items()}
    for path, value in fidelity.items():
        print(f"  fidelity {Path(path).stem}: {value:.3f}")
    ceiling = (len(kinds["within"]) + len(kinds["beyond"]) + best_rate["nowhere"] * len(kinds["nowhere"])) / len(rows)
    print(f"ceiling_fidelity={ceiling:.3f} best_fidelity={max(fidelity.values()):.3f}")


if __name__ == "__main__":
    main()
