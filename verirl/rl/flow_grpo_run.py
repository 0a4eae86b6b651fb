"""A ``trainer: flow_grpo`` recipe, run by the training worker (one process per accelerate rank).

Loads the pipeline and prompts, evaluates held-out prompts (one deterministic image each, scored by the eval
reward), runs :class:`~verirl.rl.flow_grpo.FlowGRPOTrainer`, logs metrics (``metrics.jsonl``; tensorboard and/or
trackio scalars and image grids of the rollouts and of the held-out images), writes checkpoints, saves the LoRA,
evaluates again, writes the model card and pushes if asked.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verirl import outputs
from verirl.evaluation import score_summary
from verirl.rl.callbacks import append_metrics

logger = logging.getLogger("verirl")


def prompt_text(prompt: Any) -> str:
    """Diffusion prompts are plain text; a chat-wrapped prompt gives its last message's content."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return str(prompt[-1].get("content", ""))
    return str(prompt)


def image_grid(images: list[Any], columns: int) -> np.ndarray:
    """(H, W, 3) uint8 grid of PIL images, ``columns`` per row (one row per prompt)."""
    arrays = [np.asarray(im.convert("RGB")) for im in images]
    h, w = arrays[0].shape[:2]
    rows = math.ceil(len(arrays) / columns)
    grid = np.full((rows * (h + 2), columns * (w + 2), 3), 255, dtype=np.uint8)
    for k, a in enumerate(arrays):
        r, c = divmod(k, columns)
        grid[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = a[:h, :w]
    return grid


def evaluate_images(
    trainer: Any, prompts: list[str], columns: dict[str, list], scorer: Any, threshold: float, seed: int
) -> tuple[dict[str, Any], list[Any]]:
    """One image per prompt, ODE sampling (no SDE noise), fixed seed; accuracy = share with reward >= threshold."""
    start = time.monotonic()
    gen = trainer.generator
    images: list[Any] = []
    for i in range(0, len(prompts), 32):
        emb = gen.encode(prompts[i : i + 32])
        images += gen.decode(gen.sample(emb, seed=seed + i, noise_level=0.0, window=[])["latents"])
    scores = scorer(prompts=prompts, completions=images, **columns)
    return score_summary(scores, threshold, start), images


class _Logger:
    """metrics.jsonl (appended) and, where asked for and installed, tensorboard and trackio: scalars and image grids.

    trackio logs locally (``$TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``; ``trackio show`` opens the
    dashboard) or to ``trackio_space_id``; a missing package is a warning, not an error."""

    def __init__(self, out: Path, config: Any, enabled: bool, resume: bool = False):
        self.path = out / outputs.METRICS
        self.enabled = enabled
        self.writer = None
        self.trackio = None
        if not enabled:
            return
        if "tensorboard" in config.report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "runs"))
            except ImportError:
                logger.warning("tensorboard is not installed; metrics go to %s only", self.path)
        if "trackio" in config.report_to:
            try:
                import trackio
            except ImportError:
                logger.warning("trackio is not installed (pip install 'verirl[trackio]'); not logging to it")
            else:
                trackio.init(
                    project=config.project,
                    name=config.run_name or out.resolve().name,
                    config=dataclasses.asdict(config),
                    space_id=config.trackio_space_id,
                    resume="allow" if resume else "never",
                )
                self.trackio = trackio

    def scalars(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_metrics(self.path, step, metrics)
        finite = {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
        if self.writer is not None:
            for k, v in finite.items():
                self.writer.add_scalar(k, v, step)
        if self.trackio is not None:
            self.trackio.log(finite, step=step)

    def images(self, tag: str, step: int, grid: np.ndarray, caption: str | None = None) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.add_image(tag, grid, step, dataformats="HWC")
        if self.trackio is not None:
            self.trackio.log({tag: self.trackio.Image(grid, caption=caption)}, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.trackio is not None:
            self.trackio.finish()


def train_flow_grpo(recipe: Any, resume: bool = False) -> dict[str, Any]:
    from transformers import set_seed

    from verirl.data import load_data
    from verirl.generators.diffusion import load_pipeline
    from verirl.models import torch_dtype
    from verirl.recipes import build_trainer_config, eval_reward
    from verirl.rewards.base import resolve_reward
    from verirl.rewards.guard import GuardedReward
    from verirl.rl.flow_grpo import FlowGRPOTrainer, make_accelerator
    from verirl.rl.grpo import guarded_rewards
    from verirl.rl.run import publish

    start = time.time()
    out = Path(recipe.output_dir)
    config = build_trainer_config(recipe.trainer, recipe.args, recipe.output_dir, recipe.file)
    accelerator = make_accelerator(config)
    main = accelerator.is_main_process
    set_seed(config.seed)
    pipe = load_pipeline(recipe.model.name, torch_dtype(recipe.model.dtype))
    train_ds, eval_ds = load_data(recipe.data)
    train_columns = {c: list(train_ds[c]) for c in train_ds.column_names if c != "prompt"}
    train_prompts = [prompt_text(p) for p in train_ds["prompt"]]
    rewards = guarded_rewards(recipe)
    trainer = FlowGRPOTrainer(
        pipe, config, rewards, [r.weight for r in recipe.rewards], recipe.model.lora, accelerator
    )
    trainer.generator.check_prompts(train_prompts, "data: prompt")
    eval_prompts = [prompt_text(p) for p in eval_ds["prompt"]] if eval_ds is not None else []
    trainer.generator.check_prompts(eval_prompts, "data: eval prompt")
    eval_columns = {c: list(eval_ds[c]) for c in eval_ds.column_names if c != "prompt"} if eval_prompts else {}
    log = _Logger(out, config, main, resume)

    results = outputs.read_results(out) if resume else {}
    results.setdefault("model", {"spec": recipe.model.name, "kind": "diffusers pipeline", "base_model": ""})
    eval_name, eval_args = eval_reward(recipe) if recipe.eval.enabled else (None, {})
    do_eval = recipe.eval.enabled and bool(eval_prompts) and main
    scorer = GuardedReward(resolve_reward(eval_name, eval_args), f"eval/{eval_name}") if do_eval else None

    def run_eval(which: str) -> None:
        if not do_eval:
            return
        logger.info("evaluating %d held-out prompts (%s training) ...", len(eval_prompts), which)
        swap = which == "after" and trainer.ema is not None
        if swap:
            trainer.ema.swap()
        try:
            result, images = evaluate_images(trainer, eval_prompts, eval_columns, scorer, recipe.eval.threshold,
                                             config.eval_seed)  # fmt: skip
        finally:
            if swap:
                trainer.ema.swap()
        result["reward"] = eval_name
        results[which] = result
        _save_grid(images[:64], out / f"eval_{which}.png")
        if images:
            log.images(f"eval_{which}", trainer.global_step, image_grid(images[:64], min(8, len(images))))
        logger.info("held-out %s >= %g: %.1f%% %s training", eval_name, recipe.eval.threshold,
                    100 * result["accuracy"], which)  # fmt: skip
        outputs.write_json_atomic(out / outputs.RESULTS, results)

    checkpoint = outputs.last_complete_checkpoint(out) if resume else None
    if checkpoint is not None:
        trainer.load_state(checkpoint)
        logger.info("resumed from %s (step %d)", checkpoint, trainer.global_step)
    if recipe.eval.before and "before" not in results:
        run_eval("before")
    accelerator.wait_for_everyone()

    first_step = trainer.global_step
    rng = random.Random(config.seed)
    order: list[int] = []
    world, rank = accelerator.num_processes, accelerator.process_index
    per_step = config.prompts_per_step * world
    consumed = trainer.global_step * per_step
    train_start = time.time()
    while trainer.global_step < config.max_steps:
        while len(order) < consumed + per_step:
            epoch = list(range(len(train_prompts)))
            rng.shuffle(epoch)
            order += epoch
        batch = order[consumed + rank * config.prompts_per_step : consumed + (rank + 1) * config.prompts_per_step]
        consumed += per_step
        prompts = [train_prompts[i] for i in batch]
        cols = {c: [values[i] for i in batch] for c, values in train_columns.items()}
        step_out = trainer.step(prompts, cols)
        metrics = _reduce(accelerator, step_out["metrics"])
        step = trainer.global_step
        if step % config.logging_steps == 0 or step == config.max_steps:
            log.scalars(step, metrics)
            logger.info("step %d/%d  reward %s  kl %.4g  %.1fs", step, config.max_steps,
                        _fmt(metrics.get("reward")), metrics.get("kl") or 0.0, metrics["step_seconds"])  # fmt: skip
        if config.image_log_steps and step % config.image_log_steps == 0:
            shown = prompts[:8]
            log.images("rollouts", step, image_grid(step_out["images"][: len(shown) * config.group_size],
                                                    config.group_size), caption=" | ".join(shown))  # fmt: skip
        if config.save_steps and step % config.save_steps == 0 and step < config.max_steps and main:
            _save_checkpoint(trainer, out / f"checkpoint-{step}")
    train_seconds = time.time() - train_start
    accelerator.wait_for_everyone()
    if main:
        trainer.save_lora(out)
        _save_checkpoint(trainer, out / f"checkpoint-{trainer.global_step}")
    run_eval("after")
    log.close()
    if main:
        results["train"] = {
            "processes": world,
            "steps": trainer.global_step,
            "seconds": round(train_seconds, 1),
            "seconds_per_step": round(train_seconds / max(1, trainer.global_step - first_step), 2),
        }
        publish(recipe, results, rewards, start)
    accelerator.wait_for_everyone()
    return results


def _save_checkpoint(trainer: Any, directory: Path) -> None:
    """LoRA + optimizer state, then trainer_state.json last (its presence marks a complete checkpoint)."""
    trainer.save_state(directory)
    outputs.write_json_atomic(directory / "trainer_state.json", {"global_step": trainer.global_step})


def _save_grid(images: list[Any], path: Path) -> None:
    if not images:
        return
    from PIL import Image

    Image.fromarray(image_grid(images, min(8, len(images)))).save(path)


def _reduce(accelerator: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """Mean of each numeric metric over processes (one process: unchanged)."""
    if accelerator.num_processes == 1:
        return metrics
    keys = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
    values = torch.tensor([float(metrics[k]) for k in keys], device=accelerator.device)
    reduced = accelerator.reduce(values, reduction="mean").tolist()
    return {**metrics, **dict(zip(keys, reduced, strict=True))}


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
