"""What every trainer's run shares: the results file, held-out evaluation before and after training, the last
complete checkpoint to resume from, the model card and the Hub push. A trainer's ``run(ctx)`` does its own
training between :meth:`RunContext.evaluate` calls and ends with :meth:`RunContext.finish`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verirl import outputs
from verirl.rl.trainer import Trainer

logger = logging.getLogger("verirl")


class RunContext:
    """One run of ``recipe`` by ``trainer`` in this process (one rank of a launch; ``is_main`` on rank 0)."""

    def __init__(self, recipe: Any, trainer: Trainer, resume: bool = False, is_main: bool = True):
        self.recipe = recipe
        self.trainer = trainer
        self.resume = resume
        self.is_main = is_main
        self.start = time.time()
        self.out = Path(recipe.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = outputs.read_results(self.out) if resume else {}
        self._scorer: Any = None

    def config(self) -> Any:
        """The trainer's config object, built from the recipe's ``args`` and what verirl derived."""
        from verirl.rl.config import build_config

        return build_config(self.trainer, self.recipe.trainer_args, self.recipe.output_dir, self.recipe.file)

    def record_model(self, kind: str, base_model: str = "") -> None:
        self.results.setdefault("model", {"spec": self.recipe.model.name, "kind": kind, "base_model": base_model})

    def write_results(self) -> None:
        if self.is_main:
            outputs.write_json_atomic(self.out / outputs.RESULTS, self.results)

    def wants_eval(self, which: str) -> bool:
        """Whether the held-out evaluation ``which`` (before/after) runs here: enabled, main process, and on resume
        not already done."""
        ev = self.recipe.eval
        if not (ev.enabled and self.trainer.evaluates and self.is_main):
            return False
        if which == "before":
            return ev.before and "before" not in self.results
        return True

    def evaluate(self, which: str, run: Callable[[], dict[str, Any]]) -> None:
        """Run ``run()`` (a held-out evaluation returning ``accuracy``, ...) if :meth:`wants_eval`; record it."""
        if not self.wants_eval(which):
            return
        result = run()
        result["reward"] = self.eval_reward()[0]
        self.results[which] = result
        logger.info("held-out accuracy %s training: %.1f%%", which, 100 * result["accuracy"])
        self.write_results()

    def eval_reward(self) -> tuple[str, dict[str, Any]]:
        """(name, args) of the reward that decides held-out correctness."""
        from verirl.evaluation import eval_reward

        return eval_reward(self.recipe.eval, self.recipe.rewards)

    def eval_scorer(self) -> Any:
        """The held-out reward behind the failure guard (resolved once per run)."""
        if self._scorer is None:
            from verirl.rewards.base import resolve_reward
            from verirl.rewards.guard import GuardedReward

            name, args = self.eval_reward()
            self._scorer = GuardedReward(resolve_reward(name, args), f"eval/{name}")
        return self._scorer

    def last_checkpoint(self) -> Path | None:
        """On ``--resume``: the newest complete checkpoint (None: start from the beginning)."""
        if not self.resume:
            return None
        checkpoint = outputs.last_complete_checkpoint(self.out)
        logger.info("resuming from %s", checkpoint or "the start (no complete checkpoint found)")
        return checkpoint

    def finish(self, train: dict[str, Any], rewards: list | None = None) -> dict[str, Any]:
        """End of a run (main process): training figures, reward failure counts and wall time into the results, the
        model card, and the Hub push if the recipe asks for it."""
        if not self.is_main:
            return self.results
        from verirl.cards import write_model_card

        self.results["train"] = train
        if rewards is not None:
            self.results["reward_failures"] = {f.name: f.stats() for f in rewards if hasattr(f, "stats")}
        self.results["worker_seconds"] = round(time.time() - self.start, 1)
        self.write_results()
        write_model_card(self.out, self.recipe, self.results, self.trainer.card)
        if self.recipe.hub.push:
            from verirl.hub import push_folder

            hub = self.recipe.hub
            self.results["hub_url"] = push_folder(
                self.out,
                hub.repo_id,
                private=hub.private,
                revision=hub.revision,
                model_files=self.trainer.model_files,
                card=self.trainer.card,
            )
            self.write_results()
        return self.results
