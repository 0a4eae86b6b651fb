"""SASRec (RecBole's class, verirl/rec/sasrec.py) vs MostPop on the MovieLens-100k split, 1,000 standard test cases.

Three training seeds (0, 1, 2), each early-stopped on 1,000 seeded validation cases; the test cases are
``sample_of(ml.test, 1000, seed=0)``, the ones every model is scored on. One line per seed (history items allowed
in the ranking, as the generative models may repeat one; ``excl`` = the variant with history items excluded), then
``mean ± sd`` (sample sd over the seeds) of NDCG@10 and HR@10, then MostPop (the 10 most frequent training
targets, the same list for every case).

    OMP_NUM_THREADS=1 python bench/rec_sasrec.py              # ~2.5-4.5 min a seed on one CPU thread
    OMP_NUM_THREADS=1 python bench/rec_sasrec.py --seeds 0    # one seed
"""

from __future__ import annotations

import argparse
import statistics

from verirl.rec.metrics import most_popular, ranking_metrics, summary_line
from verirl.rec.movielens import load_movielens
from verirl.rec.sasrec import evaluate_model, train_sasrec
from verirl.rec.tasks import sample_of


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--eval-seed", type=int, default=0)
    args = parser.parse_args()

    ml = load_movielens()
    cases = sample_of(ml.test, args.n_eval, args.eval_seed)
    print(
        f"ml-100k: {len(ml.items)} items, train/valid/test {len(ml.train)}/{len(ml.valid)}/{len(ml.test)}; "
        f"{len(cases)} test cases (eval_seed {args.eval_seed})",
        flush=True,
    )
    runs: dict[str, list[dict[str, float]]] = {"sasrec": [], "sasrec_excl": []}
    for seed in args.seeds:
        model = train_sasrec(ml, seed=seed)
        full = evaluate_model(model, cases)
        excl = evaluate_model(model, cases, exclude_history=True)
        runs["sasrec"].append(full)
        runs["sasrec_excl"].append(excl)
        print(
            f"sasrec seed={seed} best_epoch={model.best_epoch} train_seconds={model.train_seconds:.0f} "
            f"{summary_line(full)} | excl ndcg@10={excl['ndcg@10']:.4f} hr@10={excl['hr@10']:.4f}",
            flush=True,
        )
    for name, metrics in runs.items():
        print(
            f"{name} ({len(metrics)} seeds): ndcg@10={mean_sd([m['ndcg@10'] for m in metrics])} "
            f"hr@10={mean_sd([m['hr@10'] for m in metrics])}"
        )
    pop = most_popular([s.target for s in ml.train])
    print(f"mostpop: {summary_line(ranking_metrics([pop] * len(cases), [s.target for s in cases]))}")


if __name__ == "__main__":
    main()
