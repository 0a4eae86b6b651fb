"""RESTRAIN: label-free GRPO with self-penalisation.

Paper: Z. Yu, W. Su, ..., J. Weston, P. Yu, J. Xu, "From Spurious Votes to Signals: Self-Driven RL with
Self-Penalization" (RESTRAIN), arXiv:2510.02172, ICLR 2026. No code was released; the formulas below are the
paper's as reproduced by the ICLR-2026 paper notes and reviews (see docs/restrain.md).

From the paper:

* every distinct final answer a_j of a prompt's n rollouts is a candidate pseudo-label, weighted by
  w_j = g(f_j) / Σ_l g(f_l), where f_j = c_j / n is its vote share and g a Gaussian shaping function;
* for each candidate, the GRPO advantage of rollout i with reward r_ij = 1[answer_i == a_j];
* negative rollout penalisation: when the majority share is below κ, rewards are zeroed and every advantage is
  offset by −δ (a purely negative update for low-consistency prompts);
* a prompt weight u_x = g(c_ref / n) from n samples of the *frozen base model*, computed once before training;
* the objective u_x · Σ_j w_j · L_GRPO(x, a_j).

Our choices (the paper does not publish them, or they are implementation details):

* **Scalar advantage.** With TRL's default single policy update per batch (``num_iterations=1``, ratio ρ = 1) the
  loss is linear in the advantage, so u_x Σ_j w_j L_GRPO(x, a_j) equals one GRPO loss with the per-rollout advantage
  A_i = u_x Σ_j w_j Ã_ij. That is what :class:`RestrainGRPOTrainer` feeds TRL. With ``num_iterations > 1`` and
  clipping this is an approximation of the per-candidate objective.
* **Defaults** ``center=1.0`` (g increasing on [0, 1]: the notes call g "monotonic"), ``sigma=0.5`` (the notes call
  small σ a regression to majority voting and warn that large σ over-weights noise; 0.5 still gives a 1-of-8 answer
  a fifth of a unanimous answer's weight), ``kappa=0.375`` as a *share* (3 of 8 votes: a prompt whose most common
  answer has fewer than 3 of 8 votes is treated as noise), ``delta=0.5`` (half a unit advantage, the low end of the
  suggested 0.5–1). Reviewers report that results are sensitive to these; sweep them for a new task.
* **Normalisation** Ã = (r − mean r) / (std r + 1e-4) with the unbiased std, as TRL's GRPO; rollouts without an
  extractable answer are never candidates and get reward 0 under every candidate.
* **Prompt weights** sample n = ``num_generations`` completions per training prompt at the training temperature,
  before the first step, and are cached next to the run (``restrain_prompt_weights.json``), so a resumed run reuses
  them; the answer extractor is pluggable (:mod:`verirl.answers`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from verirl.answers import vote_counts
from verirl.rl.advantages import RestrainConfig, restrain_config

__all__ = ["RestrainConfig", "RestrainGRPOTrainer", "restrain_advantages", "with_prompt_weights"]

PROMPT_WEIGHT_COLUMN = "restrain_prompt_weight"
CACHE_FILE = "restrain_prompt_weights.json"


def shaping(f: float, center: float, sigma: float) -> float:
    """The Gaussian shaping g(f) = exp(−(f − center)² / (2σ²))."""
    return math.exp(-((f - center) ** 2) / (2 * sigma**2))


def _std(values: Sequence[float]) -> float:
    """Unbiased sample standard deviation (as ``torch.std``); 0 for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def restrain_advantages(
    answers: Sequence[Any],
    *,
    kappa: float,
    delta: float,
    sigma: float,
    center: float = 1.0,
    prompt_weight: float = 1.0,
    eps: float = 1e-4,
) -> list[float]:
    """RESTRAIN advantages for one prompt's group of rollouts (``answers[i]`` is rollout i's answer, None = none)."""
    n = len(answers)
    if n == 0:
        return []
    counts = vote_counts(answers)
    if not counts:
        return [-prompt_weight * delta if kappa > 0 else 0.0] * n
    majority_share = max(counts.values()) / n
    penalised = majority_share < kappa
    raw = {a: shaping(c / n, center, sigma) for a, c in counts.items()}
    total = sum(raw.values())
    advantages = [0.0] * n
    for candidate, g in raw.items():
        rewards = [0.0] * n if penalised else [1.0 if a == candidate else 0.0 for a in answers]
        mean, std = sum(rewards) / n, _std(rewards)
        for i, r in enumerate(rewards):
            a_ij = (r - mean) / (std + eps)
            if penalised:
                a_ij -= delta
            advantages[i] += (g / total) * a_ij
    return [prompt_weight * a for a in advantages]


def group_stats(answers: Sequence[Any], kappa: float) -> dict[str, float]:
    """Majority share, distinct answers and whether the group is penalised (for logging)."""
    counts = vote_counts(answers)
    share = max(counts.values()) / len(answers) if counts else 0.0
    return {"majority_share": share, "distinct_answers": float(len(counts)), "penalised": float(share < kappa)}


# ------------------------------------------------------------------------------------------ prompt weights


def _key(prompt: Any) -> str:
    return hashlib.sha1(json.dumps(prompt, sort_keys=True, default=str).encode()).hexdigest()


def prompt_weights(
    generate: Callable[[list[Any]], list[list[str]]],
    prompts: list[Any],
    extractor: Callable[[str], str | None],
    config: RestrainConfig,
) -> list[dict[str, Any]]:
    """u_x = g(c_ref / n) per prompt from the frozen model's samples; ``generate(prompts) -> n texts per prompt``."""
    from verirl.answers import extract_all

    results = []
    groups = generate(prompts)
    if len(groups) != len(prompts):
        raise ValueError(f"generate returned {len(groups)} groups for {len(prompts)} prompts")
    for texts in groups:
        answers = extract_all(extractor, texts)
        counts = vote_counts(answers)
        share = max(counts.values()) / len(texts) if counts else 0.0
        results.append(
            {
                "weight": shaping(share, config.center, config.sigma),
                "majority_share": share,
                "majority": counts.most_common(1)[0][0] if counts else None,
            }
        )
    return results


def cached_prompt_weights(
    path: Path,
    prompts: list[Any],
    settings: dict[str, Any],
    compute: Callable[[list[Any]], list[dict[str, Any]]],
) -> list[float]:
    """Weights for ``prompts`` from the cache file, computing (and saving) only the missing ones.

    A cache written with other settings (model, n, temperature, extractor, σ, centre) is not reused.
    """
    cache: dict[str, Any] = {}
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if stored.get("settings") == settings:
                cache = stored.get("prompts", {})
        except (json.JSONDecodeError, AttributeError):
            cache = {}
    keys = [_key(p) for p in prompts]
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        unique = list(dict.fromkeys(keys[i] for i in missing))
        first = {k: prompts[keys.index(k)] for k in unique}
        for key, result in zip(unique, compute([first[k] for k in unique]), strict=True):
            cache[key] = result
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": settings, "prompts": cache}, indent=1))
        tmp.replace(path)
    return [float(cache[k]["weight"]) for k in keys]


# ---------------------------------------------------------------------------------------------- trainer


class RestrainGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with RESTRAIN advantages in place of the reward-derived ones.

    Rewards are still computed and logged (use a label-free reward such as ``majority_vote``, or a gold-label
    reward with weight 0 to monitor accuracy without training on it); the advantages come from the rollouts'
    extracted answers. Per-prompt weights are read from the ``restrain_prompt_weight`` column (1.0 if absent).
    """

    def __init__(self, *args: Any, restrain: RestrainConfig, extractor: Callable[[str], str | None], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.restrain = restrain
        self.extractor = extractor

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from accelerate.utils import gather_object

        from verirl.answers import extract_all

        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        n = self.num_generations if mode == "train" else self.num_generations_eval
        ids, mask = output["completion_ids"], output["completion_mask"].bool()
        texts = self.processing_class.batch_decode(
            [row[keep].tolist() for row, keep in zip(ids, mask, strict=True)], skip_special_tokens=True
        )
        answers = gather_object(extract_all(self.extractor, texts))
        weights = gather_object([float(x.get(PROMPT_WEIGHT_COLUMN, 1.0)) for x in inputs])
        advantages: list[float] = []
        stats: list[dict[str, float]] = []
        c = self.restrain
        for start in range(0, len(answers), n):
            group = answers[start : start + n]
            advantages += restrain_advantages(
                group,
                kappa=c.kappa,
                delta=c.delta,
                sigma=c.sigma,
                center=c.center,
                prompt_weight=weights[start],
                eps=c.eps,
            )
            stats.append(group_stats(group, c.kappa))
        local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
        output["advantages"] = torch.tensor(
            advantages[local], dtype=output["advantages"].dtype, device=output["advantages"].device
        )
        for name in ("majority_share", "distinct_answers", "penalised"):
            self._metrics[mode][f"restrain/{name}"].append(sum(s[name] for s in stats) / len(stats))
        self._metrics[mode]["restrain/prompt_weight"].append(sum(weights) / len(weights))
        self._metrics[mode]["restrain/answered"].append(sum(a is not None for a in answers) / len(answers))
        logged = self._logs["advantages"]  # the completions table shows the advantages actually used
        for _ in range(min(len(advantages), len(logged))):
            logged.pop()
        logged.extend(advantages)
        return output


def restrain_settings(
    model: str, n: int, temperature: float, max_new_tokens: int, extractor: str, config: RestrainConfig
) -> dict[str, Any]:
    """What a cached prompt weight depends on."""
    return {
        "model": model,
        "n": n,
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
        "extractor": extractor,
        "sigma": config.sigma,
        "center": config.center,
    }


def with_prompt_weights(
    recipe: Any, model: Any, tokenizer: Any, train_dataset: Any, config: Any, extractor: Callable[[str], str | None]
) -> Any:
    """Add the ``restrain_prompt_weight`` column: u_x from ``num_generations`` samples of the model *before* any
    training step (the frozen base), computed on the main process and cached in the output directory."""
    import logging
    import time

    import torch
    from accelerate import PartialState

    from verirl.generators import SamplingParams
    from verirl.generators.hf import HFGenerator

    log = logging.getLogger("verirl")
    restrain = restrain_config(recipe.advantage)
    n = config.num_generations
    settings = restrain_settings(
        recipe.model.name, n, config.temperature, config.max_completion_length, recipe.advantage.extractor, restrain
    )
    generator = HFGenerator(
        model, tokenizer, batch_size=64, autocast_bf16=bool(config.bf16) and not torch.cuda.is_available()
    )
    sampling = SamplingParams(
        max_new_tokens=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p if config.top_p is not None else 1.0,
        top_k=config.top_k or 0,
        seed=config.seed,
    )

    def compute(prompts: list[Any]) -> list[dict[str, Any]]:
        start = time.monotonic()
        log.info("RESTRAIN: sampling %d completions for each of %d prompts with the frozen model ...", n, len(prompts))
        result = prompt_weights(
            lambda ps: generator.generate(ps, n=n, sampling=sampling).texts, prompts, extractor, restrain
        )
        log.info(
            "RESTRAIN: prompt weights ready in %.0f s (mean %.3f)",
            time.monotonic() - start,
            sum(r["weight"] for r in result) / max(len(result), 1),
        )
        return result

    def refuse(prompts: list[Any]) -> list[dict[str, Any]]:
        raise RuntimeError("prompt weights missing from the cache written by the main process")

    path = Path(recipe.output_dir) / CACHE_FILE
    prompts = list(train_dataset["prompt"])
    state = PartialState()
    if state.is_main_process:
        weights = cached_prompt_weights(path, prompts, settings, compute)
    state.wait_for_everyone()
    if not state.is_main_process:
        weights = cached_prompt_weights(path, prompts, settings, refuse)
    if PROMPT_WEIGHT_COLUMN in train_dataset.column_names:
        train_dataset = train_dataset.remove_columns(PROMPT_WEIGHT_COLUMN)
    return train_dataset.add_column(PROMPT_WEIGHT_COLUMN, weights)
