"""``verirl train``, ``verirl evaluator train`` and ``verirl push``: everything here reads the trainer's
declaration (:class:`verirl.rl.trainer.Trainer`) and never compares a trainer's name."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from verirl.errors import RecipeError, VerirlError


def plan(recipe: Any, launch_cmd: list[str] | None, num_processes: int) -> str:
    """The ``--dry-run`` plan: what would be loaded, trained, evaluated, written and launched."""
    from verirl.evaluation import eval_reward
    from verirl.models import causal_lm_line
    from verirl.rewards.base import find_reward
    from verirl.rl.config import build_config

    trainer = recipe.declaration
    d = recipe.data
    if d.builtin:
        data_line = (
            f"built-in {d.builtin}: {d.n_train or 'default'} train / {d.n_eval or 'default'} eval, seed {d.seed}"
        )
        data_line += f", {d.options}" if d.options else ""
    else:
        data_line = f"load_dataset({d.path!r}, {d.name!r}, data_files={d.data_files!r}, split={d.split!r})"
    reward_lines = []
    for r in recipe.rewards:
        obj = find_reward(r.name)
        if callable(getattr(obj, "plan_line", None)):  # a reward that describes itself (e.g. a verifier mixture)
            reward_lines.append(f"{r.metric} x{r.weight:g} ({obj.plan_line(r.args)})")
            continue
        origin = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"
        extra = f", args {r.args}" if r.args else ""
        reward_lines.append(f"{r.name} x{r.weight:g} ({origin}; timeout {r.timeout_s} s{extra})")
    config = build_config(trainer, recipe.trainer_args, recipe.output_dir, recipe.file) if trainer.has_args else None
    lines = [
        ("recipe", recipe.file),
        ("trainer", f"{recipe.trainer} ({type(config).__name__} validated)" if config else recipe.trainer),
        ("model", (trainer.model_line or causal_lm_line)(recipe.model)),
        ("data", data_line),
        ("rewards", "; ".join(reward_lines) or "none"),
        ("generator", recipe.generator.backend),
    ]
    lines += [(s.key, s.plan(recipe.section(s.key))) for s in trainer.sections if s.plan is not None]
    if trainer.has_args:
        args_line = ", ".join(f"{k}={v}" for k, v in recipe.args.items())
        if recipe.derived:
            args_line += "; set by verirl: " + ", ".join(f"{k}={v}" for k, v in recipe.derived.items())
        lines.append(("args", args_line or "defaults"))
    if trainer.plan is not None:
        lines += trainer.plan(recipe, config, num_processes)
    if trainer.evaluates and recipe.eval.enabled:
        name, _ = eval_reward(recipe.eval, recipe.rewards)
        before = "before and " if recipe.eval.before else ""
        lines.append(("eval", f"{trainer.eval_line}, {name} >= {recipe.eval.threshold:g} counts as correct, "
                              f"{before}after training"))  # fmt: skip
    elif trainer.evaluates:
        lines.append(("eval", "off"))
    hub = recipe.hub
    lines.append(
        ("hub", f"push to {hub.repo_id} ({'private' if hub.private else 'public'})" if hub.push else "no push")
    )
    lines.append(("output_dir", recipe.output_dir))
    launch = "accelerate launch " + " ".join(launch_cmd) if launch_cmd else "in this process (no accelerate launch)"
    lines.append(("launch", launch))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def cmd_train(args: argparse.Namespace) -> int:
    from verirl.recipes import load_recipe

    if args.num_processes is not None and args.num_processes < 1:
        raise VerirlError(f"--num-processes: expected a positive integer, got {args.num_processes}")
    if args.accelerate_config and not Path(args.accelerate_config).is_file():
        raise VerirlError(f"--accelerate-config: file not found: {args.accelerate_config}")
    recipe = load_recipe(args.recipe, args.overrides, num_processes=args.num_processes or 1)
    return train(recipe, args, dry_run=args.dry_run)


def train(recipe: Any, args: argparse.Namespace, dry_run: bool = False) -> int:
    """Run a validated recipe the way its trainer is launched."""
    import torch

    from verirl import outputs
    from verirl.launch import launch, launch_argv

    start = time.time()
    trainer = recipe.declaration
    resume = getattr(args, "resume", False)
    if resume and not trainer.resumable:
        raise VerirlError(f"--resume: trainer {recipe.trainer} does not resume (start again with --overwrite)")
    out = Path(recipe.output_dir)
    recipe_yaml = out / outputs.RECIPE
    n = getattr(args, "num_processes", None) or 1
    argv = None
    if trainer.launch == "accelerate":
        argv = launch_argv(recipe_yaml, getattr(args, "num_processes", None), getattr(args, "accelerate_config", None),
                           resume, args.debug, torch.cuda.is_available())  # fmt: skip
    elif n > 1:
        raise VerirlError(f"--num-processes: trainer {recipe.trainer} runs in one process")
    try:
        outputs.check_output_dir(out, args.overwrite, resume)
    except VerirlError as exc:  # name the recipe whose output_dir it is
        message = str(exc)
        if not message.startswith("output_dir "):
            raise
        raise RecipeError(recipe.file, "output_dir", message.removeprefix("output_dir ")) from None
    if dry_run:
        print(plan(recipe, argv, n))
        print("dry run: the recipe is valid; nothing was loaded or written")
        return 0
    from verirl.models import BUILTIN_MODELS, prepare_builtin

    if recipe.model.name in BUILTIN_MODELS:
        print(f"[verirl] preparing built-in model {recipe.model.name} (once; cached) ...", file=sys.stderr)
        prepare_builtin(recipe.model.name)
    outputs.prepare_output_dir(out, overwrite=args.overwrite, resume=resume)
    write_recipe(recipe, recipe_yaml)
    if argv is None:
        from verirl.rl.context import RunContext

        trainer.run(RunContext(recipe, trainer, resume=resume))
        return 0
    print(f"[verirl] launching: accelerate launch {' '.join(argv)}", file=sys.stderr)
    code = launch(argv)
    if code != 0:
        return code
    print(summary(out, time.time() - start))
    return 0


def write_recipe(recipe: Any, path: Path) -> None:
    """Write the resolved recipe; on resume keep the previous one if it differs (nothing written is lost)."""
    text = recipe.to_yaml()
    if path.is_file() and path.read_text() != text:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path.rename(path.with_name(f"recipe.{stamp}.yaml"))
    path.write_text(text)


def summary(out: Path, seconds: float) -> str:
    from verirl import outputs

    results = outputs.read_results(out)
    lines = ["", "=" * 72]
    before, after = results.get("before"), results.get("after")
    if before or after:
        b = f"{100 * before['accuracy']:.1f}%" if before else "n/a"
        a = f"{100 * after['accuracy']:.1f}%" if after else "n/a"
        delta = f" ({100 * (after['accuracy'] - before['accuracy']):+.1f} points)" if before and after else ""
        n = (after or before)["n"]
        lines.append(f"held-out accuracy ({n} prompts): {b} before -> {a} after training{delta}")
    train = results.get("train") or {}
    minutes, secs = divmod(int(seconds), 60)
    lines.append(
        f"wall time: {minutes}m{secs:02d}s (training {train.get('seconds', '?')} s, {train.get('steps', '?')} steps)"
    )
    failures = {k: v.get("failed", 0) for k, v in (results.get("reward_failures") or {}).items() if v.get("failed")}
    if failures:
        lines.append(f"reward failures (samples scored None): {failures}")
    lines.append(f"model:      {out}/")
    lines.append(f"metrics:    {out / outputs.METRICS}")
    lines.append(f"eval:       {out / outputs.RESULTS}")
    lines.append(f"model card: {out / outputs.CARD}")
    if results.get("hub_url"):
        lines.append(f"hub:        {results['hub_url']}")
    lines.append("=" * 72)
    return "\n".join(lines)


def cmd_evaluator(args: argparse.Namespace) -> int:
    if args.evaluator_command != "train":
        raise VerirlError("evaluator: expected an action: train")
    from verirl.recipes import apply_overrides, read_yaml, validate
    from verirl.rl.evaluator import EVALUATOR

    data = apply_overrides(read_yaml(args.recipe), args.overrides, args.recipe)
    data.setdefault("trainer", EVALUATOR.name)
    recipe = validate(data, args.recipe)
    if recipe.declaration is not EVALUATOR:
        raise VerirlError(f"{args.recipe}: trainer: `verirl evaluator train` needs trainer: evaluator")
    args.resume, args.num_processes, args.accelerate_config = False, None, None
    return train(recipe, args)


def cmd_push(args: argparse.Namespace) -> int:
    import yaml

    from verirl import outputs
    from verirl.hub import push_folder
    from verirl.rl.registry import get_trainer, trainer_names

    recipe_file = Path(args.output_dir) / outputs.RECIPE
    name = None
    if recipe_file.is_file():
        try:
            name = (yaml.safe_load(recipe_file.read_text()) or {}).get("trainer")
        except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
            name = None
    try:
        declarations = [get_trainer(name)] if name else [get_trainer(n) for n in trainer_names()]
    except VerirlError:
        declarations = [get_trainer(n) for n in trainer_names()]
    files = tuple(dict.fromkeys(f for d in declarations for f in d.model_files))
    card = declarations[0].card if len(declarations) == 1 else None
    url = push_folder(args.output_dir, args.repo_id, private=not args.public, revision=args.revision,
                      model_files=files, card=card)  # fmt: skip
    print(f"pushed {args.output_dir} to {url}")
    return 0
