"""The training worker: ``accelerate launch -m verirl.rl.run --recipe OUTPUT_DIR/recipe.yaml``.

``verirl train`` validates the recipe, prepares the output directory and launches this module once per process.
It loads the model and data, evaluates held-out accuracy, trains with TRL, saves the model, evaluates again, writes
the model card and (if the recipe asks) pushes to the Hub.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError

logger = logging.getLogger("verirl")


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="[verirl] %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def train(recipe_path: str, resume: bool = False) -> dict[str, Any]:
    """Run one recipe in this process (one rank of an accelerate launch). Returns the results dict."""
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from verirl import outputs
    from verirl.data import load_data
    from verirl.evaluation import evaluate
    from verirl.generators.hf import HFGenerator
    from verirl.models import load_model
    from verirl.recipes import _lora_config, build_trainer_config, eval_reward, load_recipe
    from verirl.rewards.base import required_columns, resolve_reward
    from verirl.rewards.guard import GuardedReward
    from verirl.rl.callbacks import MetricsJSONLCallback

    start = time.time()
    recipe = load_recipe(recipe_path, num_processes=int(os.environ.get("WORLD_SIZE", "1")))
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if recipe.trainer == "flow_grpo":
        from verirl.rl.flow_grpo_run import train_flow_grpo

        return train_flow_grpo(recipe, resume=resume)
    state = PartialState()
    main = state.is_main_process
    config = build_trainer_config(recipe.trainer, recipe.trainer_args, recipe.output_dir, recipe.file)
    set_seed(config.seed)

    model, tokenizer, source = load_model(
        recipe.model.name, recipe.model.dtype, recipe.model.trust_remote_code, recipe.model.revision
    )
    train_ds, eval_ds = load_data(recipe.data)
    _check_columns(recipe, train_ds, required_columns, resolve_reward)
    peft_config = _lora_config(recipe.model.lora, recipe.file) if recipe.model.lora is not None else None

    results = outputs.read_results(out) if resume else {}
    results.setdefault("model", {"spec": recipe.model.name, "kind": source.kind, "base_model": source.base_model})
    eval_name, eval_args = eval_reward(recipe) if recipe.eval.enabled else (None, {})
    do_eval = recipe.eval.enabled and eval_ds is not None and len(eval_ds) > 0
    max_new = recipe.eval.max_new_tokens or getattr(config, "max_completion_length", None) or 64

    def run_eval(which: str) -> None:
        if not (do_eval and main):
            return
        generator = HFGenerator(
            trainer_model if which == "after" else model,
            tokenizer,
            batch_size=recipe.eval.batch_size,
            autocast_bf16=bool(config.bf16) and not torch.cuda.is_available(),
        )
        scorer = GuardedReward(resolve_reward(eval_name, eval_args), f"eval/{eval_name}")
        logger.info("evaluating held-out accuracy (%s training) on %d samples ...", which, len(eval_ds))
        result = evaluate(generator, eval_ds, scorer, max_new, recipe.eval.threshold)
        result["reward"] = eval_name
        results[which] = result
        logger.info("held-out accuracy %s training: %.1f%%", which, 100 * result["accuracy"])
        outputs.write_json_atomic(out / outputs.RESULTS, results)

    trainer_model = model
    if recipe.eval.before and "before" not in results:
        run_eval("before")
    state.wait_for_everyone()

    callbacks = [MetricsJSONLCallback(out / outputs.METRICS)]
    rollout_engine = None
    if recipe.trainer == "grpo":
        from verirl.rl.grpo import build_grpo_trainer

        if recipe.generator.backend != "hf":
            from verirl.generators.backends import build_generator

            logger.info("starting the %s rollout engine for %s ...", recipe.generator.backend, source.path)
            rollout_engine = build_generator(
                recipe.generator,
                model_path=source.path,
                tokenizer=tokenizer,
                model_dtype=recipe.model.dtype,
                seed=config.seed,
            )
        trainer = build_grpo_trainer(
            recipe, model, tokenizer, train_ds, config, callbacks, peft_config, generator=rollout_engine
        )
    else:
        from verirl.rl.dpo import build_dpo_trainer

        trainer = build_dpo_trainer(model, tokenizer, train_ds, config, callbacks, peft_config)

    checkpoint = outputs.last_complete_checkpoint(out) if resume else None
    if resume:
        logger.info("resuming from %s", checkpoint or "the start (no complete checkpoint found)")
    train_start = time.time()
    train_output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.time() - train_start
    trainer.save_model(recipe.output_dir)
    trainer_model = trainer.model
    if main:
        tokenizer.save_pretrained(recipe.output_dir)

    run_eval("after")
    if main:
        results["train"] = {
            "processes": state.num_processes,
            "steps": trainer.state.global_step,
            "seconds": round(train_seconds, 1),
            "train_loss": getattr(train_output, "training_loss", None),
        }
        if rollout_engine is not None:
            rollouts = trainer.rollout_func
            results["train"]["rollouts"] = {
                "backend": recipe.generator.backend,
                "engine_start_seconds": round(getattr(rollout_engine, "startup_seconds", 0.0), 1),
                "generate_seconds": round(rollouts.seconds["generate"], 1),
                "weight_sync_seconds": round(rollouts.seconds["sync"], 1),
            }
        publish(recipe, results, trainer.reward_funcs if recipe.trainer == "grpo" else None, start)
    state.wait_for_everyone()
    return results


def publish(recipe: Any, results: dict[str, Any], rewards: list | None, start: float) -> None:
    """End of a run (main process): reward failure counts and wall time into the results, the model card, and the
    Hub push if the recipe asks for it. Shared by every trainer."""
    from verirl import outputs
    from verirl.cards import write_model_card

    out = Path(recipe.output_dir)
    if rewards is not None:
        results["reward_failures"] = {f.name: f.stats() for f in rewards if hasattr(f, "stats")}
    results["worker_seconds"] = round(time.time() - start, 1)
    outputs.write_json_atomic(out / outputs.RESULTS, results)
    write_model_card(out, recipe, results)
    if recipe.hub.push:
        from verirl.hub import push_folder

        url = push_folder(out, recipe.hub.repo_id, private=recipe.hub.private, revision=recipe.hub.revision)
        results["hub_url"] = url
        outputs.write_json_atomic(out / outputs.RESULTS, results)


def _check_columns(recipe: Any, train_ds: Any, required_columns: Any, resolve_reward: Any) -> None:
    """Fail before training, not at the first reward call, when a reward needs a column the data lacks."""
    columns = set(train_ds.column_names)
    for spec in recipe.rewards:
        missing = [c for c in required_columns(resolve_reward(spec.name, spec.args)) if c not in columns]
        if missing:
            raise VerirlError(
                f"{recipe.file}: rewards: {spec.name!r} needs dataset column(s) {missing}; "
                f"the data has {sorted(columns)} (rename with data.answer_column)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verirl-worker", description="verirl training worker (use `verirl train`)")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    if not args.debug:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # TRL's own vLLM path is not used (verirl's rollout_func is), so its vLLM version range does not apply
        warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    try:
        train(args.recipe, resume=args.resume)
    except VerirlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; checkpoints already written are kept (continue with --resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - reported in one line; the traceback goes to error.log
        log = Path(args.recipe).parent / "error.log"
        try:
            log.write_text(traceback.format_exc())
        except OSError:
            pass
        if args.debug:
            traceback.print_exc()
        print(
            f"error: training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            f"(traceback in {log}; checkpoints already written are kept, continue with --resume)",
            file=sys.stderr,
        )
        return 1
    finally:
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Destroy the torch.distributed group before the interpreter exits. Left to static teardown, gloo's threads are
    sometimes still joinable and the rank aborts ("terminate called without an active exception", exit -6) after a
    finished run: 1-3 in 40-80 two-rank runs without this, 0 in 80 with it (bare torchrun, measured 2026-12-01)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception as exc:  # noqa: BLE001 - the run's own exit code and message matter more
            logger.debug("destroy_process_group failed: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
