"""Catalogue-constrained ranking, HF vs vLLM: SmolLM2-135M-Instruct (untrained on the task) ranks the ml-100k
catalogue (1,663 titles) for 40 held-out prompts with 10 beams, once with HF's trie-constrained ``generate``
(:class:`~verirl.generators.constrained.ConstrainedGenerator`, batch 8, bf16 autocast) and once with vLLM's beam
search under a token-id structural tag (:class:`~verirl.rec.vllm_rank.VLLMRanker`, bf16 engine). One line:
users/s of each (engine start-up not counted, reported apart), their ratio (vLLM / HF), the share of prompts whose
top-1 titles agree and the mean top-10 overlap.

The default ``--length-penalty 0`` is the only value at which HF's and vLLM's beam scores mean the same (the plain
sum of log-probs; verirl/rec/vllm_rank.py). Both paths run on ``--threads`` CPU threads (1 by default; vLLM's are
bound to the first cores).

    OMP_NUM_THREADS=1 python bench/rec_vllm_rank.py          # ~10-30 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n-eval", type=int, default=40)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length-penalty", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verirl.generators.constrained import ConstrainedGenerator
    from verirl.generators.spec import EngineOptions
    from verirl.models import BUILTIN_MODELS, prepare_builtin
    from verirl.rec.movielens import load_movielens
    from verirl.rec.tasks import completion_for, ml_100k
    from verirl.rec.vllm_rank import VLLMRanker

    torch.set_num_threads(args.threads)
    path = prepare_builtin(args.model) if args.model in BUILTIN_MODELS else args.model
    completions = [completion_for(t) for t in load_movielens().titles()]
    prompts = [row["question"] for row in ml_100k(n_train=1, n_eval=args.n_eval)[1]]
    k, lp = args.beams, args.length_penalty

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    hf_ranker = ConstrainedGenerator(
        model, AutoTokenizer.from_pretrained(path), completions, args.batch_size, autocast_bf16=True
    )
    start = time.monotonic()
    hf = hf_ranker.rank(prompts, k, lp)
    hf_seconds = time.monotonic() - start
    del model, hf_ranker

    start = time.monotonic()
    options = EngineOptions(dtype="bfloat16", kv_cache_gib=1, cpu_threads=f"0-{args.threads - 1}")
    with VLLMRanker(path, completions, options) as ranker:
        startup = time.monotonic() - start
        start = time.monotonic()
        vllm = ranker.rank(prompts, k, lp)
        vllm_seconds = time.monotonic() - start

    hf_rate, vllm_rate = len(prompts) / hf_seconds, len(prompts) / vllm_seconds
    top1 = sum(a[:1] == b[:1] for a, b in zip(hf, vllm, strict=True)) / len(prompts)
    overlap = sum(len(set(a) & set(b)) / k for a, b in zip(hf, vllm, strict=True)) / len(prompts)
    print(
        f"hf_users_per_s={hf_rate:.4f} vllm_users_per_s={vllm_rate:.4f} ratio={vllm_rate / hf_rate:.2f} "
        f"top1_agree={top1:.3f} top10_overlap={overlap:.3f} length_penalty={lp} users={len(prompts)} beams={k} "
        f"titles={len(set(completions))} vllm_startup_s={startup:.0f} "
        f"hf_lists={sum(len(a) for a in hf) / len(hf):.1f} vllm_lists={sum(len(b) for b in vllm) / len(vllm):.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
