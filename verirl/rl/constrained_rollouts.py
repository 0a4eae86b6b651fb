"""GRPO's ``constrain:`` section: every rollout is one of a closed set of completions (a catalogue of titles).

Generative recommendation samples free text, and a small recommender names a real catalogue title in only a fraction
of its samples (15-16 % for a 600-window SmolLM2 recommender, docs/benchmarks.md): a catalogue constraint in the
reward then floors most of a group and leaves no signal. Decoding constrained to the catalogue — D3 (arXiv
2406.14900) and VRec (arXiv 2603.07725) rank with beam search over a title trie — makes every rollout a valid title,
so the rewards grade only real recommendations.

Our design: TRL's ``rollout_func`` samples ``num_generations`` completions per prompt from the policy itself
(:class:`~verirl.generators.constrained.ConstrainedGenerator`: transformers' ``generate`` with a token trie as
``prefix_allowed_tokens_fn``), at the trainer's temperature / top-p / top-k. No sampling log-probabilities are
returned (TRL then takes the policy's own, as for its hf backend); the loss uses the *unmasked* policy's
log-probabilities of the sampled titles, so the update also raises the mass of catalogue tokens against invented ones.
The samples come from the masked, renormalised distribution, not from the policy's: GRPO's ratio is 1 at the
sampling step either way, and the masked distribution is the one deployed (constrained beam search). A user's set is
a text file (one completion per line, no newline inside one) or a JSON list of strings; ``ml-100k`` is the
MovieLens-100k catalogue, each title written as the ml-100k task's completions are (``"Title (1995)"`` and a newline).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verirl.errors import RecipeError, VerirlError
from verirl.typecheck import setting

logger = logging.getLogger("verirl")

BUILTIN_SETS = ("ml-100k",)


@dataclass(frozen=True)
class ConstrainSpec:
    """The completions rollouts are constrained to (a plain string is ``{completions: ...}``)."""

    completions: str | None = setting(
        None, help="ml-100k (the MovieLens-100k titles) | a .txt file (one per line) | a .json list | null: free text"
    )

    @property
    def enabled(self) -> bool:
        return self.completions is not None


def load_completions(source: str) -> list[str]:
    """The allowed completions of ``source`` (see :class:`ConstrainSpec`), duplicates dropped, order kept."""
    if source == "ml-100k":
        from verirl.rec.movielens import load_movielens
        from verirl.rec.tasks import completion_for

        return [completion_for(t) for t in load_movielens().titles()]
    path = Path(source)
    if not path.is_file():
        raise VerirlError(f"{source}: expected ml-100k or a .txt / .json file of allowed completions")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VerirlError(f"{source}: cannot be read as UTF-8 text ({exc.__class__.__name__})") from None
    if path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VerirlError(f"{source}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise VerirlError(f"{source}: expected a JSON list of strings")
    else:
        items = text.splitlines()
    items = list(dict.fromkeys(s for s in items if s.strip()))
    if not items:
        raise VerirlError(f"{source}: holds no completions")
    return items


def check_constrain(spec: ConstrainSpec, given: Mapping[str, Any], file: str) -> ConstrainSpec:
    if spec.completions is None or spec.completions in BUILTIN_SETS:
        return spec
    try:
        load_completions(spec.completions)
    except VerirlError as exc:
        raise RecipeError(file, "constrain.completions", str(exc)) from None
    return spec


def constrain_line(spec: ConstrainSpec) -> str:
    if not spec.enabled:
        return "none (free-text rollouts)"
    return f"rollouts sampled from a token trie over {spec.completions} (transformers generate)"


class ConstrainedRollouts:
    """TRL's ``rollout_func``: each run of equal prompts becomes ``n`` constrained samples from the trainer's model.

    The trie is built here, before training (a completion longer than ``max_completion_length`` is an error now, not
    at the first step); the model is the trainer's own, unwrapped at each call (LoRA adapters included), so there are
    no weights to sync. Generation time is kept in ``seconds`` for the run's figures."""

    def __init__(self, completions: list[str], tokenizer: Any, config: Any, batch_size: int = 8):
        from verirl.generators.constrained import ConstrainedGenerator

        self.generator = ConstrainedGenerator(
            None, tokenizer, completions, batch_size=batch_size, autocast_bf16=bool(config.bf16)
        )
        check_depth(self.generator.trie.depth, config.max_completion_length)
        self.allowed = len(self.generator.trie.text_of)
        self.seconds = {"generate": 0.0}

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list]:
        import time

        from verirl.generators.base import prompt_text
        from verirl.rl.rollouts import runs_of, trainer_sampling

        generator = self.generator
        generator.model = trainer.accelerator.unwrap_model(trainer.model)
        sampling = trainer_sampling(trainer.args)
        start = time.time()
        runs = runs_of(prompts)
        samples: list[list[list[int]]] = [[] for _ in runs]
        for n in {count for _, count in runs}:  # one batched call per distinct group size (usually one)
            chosen = [i for i, (_, count) in enumerate(runs) if count == n]
            rollouts = generator.generate([runs[i][0] for i in chosen], n, sampling)
            for i, ids in zip(chosen, rollouts.token_ids, strict=True):
                samples[i] = ids
        tokenizer = generator.tokenizer
        prompt_ids: list[list[int]] = []
        completion_ids: list[list[int]] = []
        for (prompt, n), ids in zip(runs, samples, strict=True):
            encoded = tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
            prompt_ids.extend([encoded] * n)
            completion_ids.extend(ids)
        self.seconds["generate"] += time.time() - start
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def check_depth(depth: int, max_completion_length: int) -> None:
    """The longest allowed completion (EOS included) must fit in ``max_completion_length``, or it is cut invalid."""
    if depth > max_completion_length:
        raise VerirlError(
            f"args.max_completion_length: the longest allowed completion is {depth} tokens (EOS included), "
            f"more than {max_completion_length}; raise it to at least {depth}"
        )
