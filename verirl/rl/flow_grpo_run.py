"""``trainer: flow_grpo`` — Flow-GRPO (arXiv 2505.05470) on a diffusers pipeline, run by the training worker (one
process per accelerate rank); the loop itself is :class:`~verirl.rl.flow_grpo.FlowGRPOTrainer`.

Loads the pipeline and prompts, evaluates held-out prompts (one deterministic image each, scored by the eval
reward), runs :class:`~verirl.rl.flow_grpo.FlowGRPOTrainer`, logs metrics (``metrics.jsonl``; tensorboard and/or
trackio scalars and image grids of the rollouts and of the held-out images), writes checkpoints, saves the LoRA,
evaluates again, writes the model card and pushes if asked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verirl import outputs
from verirl.cards import CardInfo
from verirl.errors import RecipeError
from verirl.evaluation import score_summary
from verirl.models import lora_config
from verirl.rl.callbacks import append_metrics
from verirl.rl.flow_grpo_config import LORA_BY_TRANSFORMER, LORA_DEFAULTS, FlowGRPOConfig, apply_preset, check_config
from verirl.rl.registry import register
from verirl.rl.trainer import Trainer

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


def run(ctx: Any) -> dict[str, Any]:
    from transformers import set_seed

    from verirl.data import load_data
    from verirl.generators.diffusion import load_pipeline
    from verirl.models import torch_dtype
    from verirl.rewards.guard import guarded_rewards
    from verirl.rl.flow_grpo import FlowGRPOTrainer, make_accelerator

    recipe, out = ctx.recipe, ctx.out
    config = ctx.config()
    accelerator = make_accelerator(config)
    main = ctx.is_main = accelerator.is_main_process
    resume = ctx.resume
    set_seed(config.seed)
    pipe = load_pipeline(recipe.model.name, torch_dtype(recipe.model.dtype))
    train_ds, eval_ds = load_data(recipe.data)
    train_columns = {c: list(train_ds[c]) for c in train_ds.column_names if c != "prompt"}
    train_prompts = [prompt_text(p) for p in train_ds["prompt"]]
    rewards = guarded_rewards(recipe.rewards)
    trainer = FlowGRPOTrainer(
        pipe, config, rewards, [r.weight for r in recipe.rewards], recipe.model.lora, accelerator
    )
    trainer.generator.check_prompts(train_prompts, "data: prompt")
    eval_prompts = [prompt_text(p) for p in eval_ds["prompt"]] if eval_ds is not None else []
    trainer.generator.check_prompts(eval_prompts, "data: eval prompt")
    eval_columns = {c: list(eval_ds[c]) for c in eval_ds.column_names if c != "prompt"} if eval_prompts else {}
    log = _Logger(out, config, main, resume)

    ctx.record_model("diffusers pipeline")
    scorer = ctx.eval_scorer() if eval_prompts and ctx.wants_eval("after") else None

    def held_out(which: str) -> dict[str, Any]:
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
        _save_grid(images[:64], out / f"eval_{which}.png")
        if images:
            log.images(f"eval_{which}", trainer.global_step, image_grid(images[:64], min(8, len(images))))
        return result

    checkpoint = ctx.last_checkpoint()
    if checkpoint is not None:
        trainer.load_state(checkpoint)
        logger.info("resumed from %s (step %d)", checkpoint, trainer.global_step)
    if eval_prompts:
        ctx.evaluate("before", lambda: held_out("before"))
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
    if eval_prompts:
        ctx.evaluate("after", lambda: held_out("after"))
    log.close()
    train = {
        "processes": world,
        "steps": trainer.global_step,
        "seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / max(1, trainer.global_step - first_step), 2),
    }
    ctx.finish(train, rewards)
    accelerator.wait_for_everyone()
    return ctx.results


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


# ------------------------------------------------------------------------------------------ the declaration


def check_pipeline(spec: Any, file: str) -> None:
    """The model is a diffusers pipeline directory (model_index.json) or a Hub id; LoRA fields checked by peft."""
    path = Path(spec.name).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise RecipeError(
                file, "model", f"{spec.name}: no model_index.json (expected a diffusers pipeline folder)"
            )
    elif spec.name.startswith((".", "/", "~")) or spec.name.count("/") != 1:
        raise RecipeError(file, "model", f"{spec.name}: no such directory, and not a Hub id (owner/name)")
    lora_config(spec.lora or {}, file, LORA_DEFAULTS)


def pipeline_line(spec: Any) -> str:
    """The ``--dry-run`` model line: the backbone's default LoRA rank is read from model_index.json (a Hub
    pipeline's class is known only when it is loaded)."""
    path = Path(spec.name).expanduser()
    kind = "local diffusers pipeline" if path.exists() else "hub"
    index = path / "model_index.json"
    transformer = json.loads(index.read_text()).get("transformer", [None, None])[1] if index.is_file() else None
    rank = LORA_BY_TRANSFORMER.get(transformer, (None, {}))[1]
    lora = {**LORA_DEFAULTS, **rank, **(spec.lora or {})}
    return f"{spec.name} ({kind}; dtype {spec.dtype}, LoRA r={lora['r']})"


def make_config(cls: type, values: dict[str, Any], output_dir: str) -> FlowGRPOConfig:
    config = cls(**apply_preset(values))
    check_config(config)
    return config


def plan(recipe: Any, config: Any, num_processes: int) -> list[tuple[str, str]]:
    return [("advantage", "per-prompt group advantages, clipped ratio over the SDE window (Flow-GRPO)")]


FLOW_GRPO = register(
    Trainer(
        name="flow_grpo",
        summary="Flow-GRPO on a diffusers flow-matching pipeline (SD3, Flux, QwenImage) with a LoRA",
        run=run,
        config=lambda: FlowGRPOConfig,
        make_config=make_config,
        check_model=check_pipeline,
        model_line=pipeline_line,
        backends=("diffusers",),
        rewards="required",
        rewards_hint="e.g. [{name: ocr_match}]",
        eval_line="one ODE image per prompt",
        plan=plan,
        model_files=("pytorch_lora_weights.safetensors",),
        card=CardInfo(
            task="text-to-image", libraries=("diffusers", "lora"), image=True, method="Flow-GRPO on diffusers"
        ),
    )
)
