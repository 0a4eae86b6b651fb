"""The ``verirl`` command.

    verirl train RECIPE [--dry-run] [--set key=value ...] [--num-processes N] [--accelerate-config FILE]
                        [--resume | --overwrite]
    verirl push OUTPUT_DIR --repo-id ID [--public] [--revision BRANCH]
    verirl rewards list | new NAME [--dir DIR] | check NAME [--args JSON] [--column KEY=VALUE ...]
    verirl models list | prepare [ALIAS]
    verirl evaluator train RECIPE [--set key=value ...] [--overwrite]
    verirl select --evaluator DIR (--model MODEL PROMPT ... | --groups FILE) [-k 8]
    verirl score textpecker IMAGE ... --text TEXT
    verirl textpecker synth | train-detector --out DIR
    verirl glyph pretrain --out DIR [--steps N]

Bad input exits with code 2 and one line naming the file/key and what was expected; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from verirl import __version__
from verirl.errors import VerirlError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")

    parser = argparse.ArgumentParser(
        prog="verirl", description="RL fine-tuning driven by verifier rewards.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"verirl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", parents=[common], help="validate a recipe and train (through accelerate)")
    train.add_argument("recipe", help="a recipe YAML file")
    train.add_argument("--dry-run", action="store_true", help="validate and print the plan; load no weights")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set args.max_steps=10 (repeatable)",
    )
    train.add_argument("--num-processes", type=int, default=None, metavar="N", help="processes to launch (default 1)")
    train.add_argument(
        "--accelerate-config",
        default=None,
        metavar="FILE",
        help="an accelerate (or DeepSpeed via accelerate) config file, passed through",
    )
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="delete a non-empty output_dir first")

    push = sub.add_parser("push", parents=[common], help="push a finished run to the Hugging Face Hub")
    push.add_argument("output_dir")
    push.add_argument("--repo-id", required=True)
    push.add_argument("--public", action="store_true", help="create the repo public (default private)")
    push.add_argument("--revision", default=None, help="a branch to push to")

    rewards = sub.add_parser("rewards", parents=[common], help="list, scaffold and check reward plug-ins")
    rsub = rewards.add_subparsers(dest="rewards_command", metavar="ACTION")
    rsub.add_parser("list", parents=[common], help="built-in and plug-in rewards, with where each comes from")
    new = rsub.add_parser("new", parents=[common], help="scaffold a reward plug-in package")
    new.add_argument("name")
    new.add_argument("--dir", default=".", help="where to create verirl-reward-NAME (default: here)")
    check = rsub.add_parser("check", parents=[common], help="run a reward on sample and hostile completions")
    check.add_argument("name", help="a reward name, plug-in or module:function")
    check.add_argument("--args", default="{}", help="JSON keyword arguments bound to the reward")
    check.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset column the reward needs, same value for every sample",
    )
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")

    evaluator = sub.add_parser("evaluator", parents=[common], help="train a FlashEvaluator (listwise K-way scorer)")
    esub = evaluator.add_subparsers(dest="evaluator_command", metavar="ACTION")
    etrain = esub.add_parser("train", parents=[common], help="sample groups, label them, train (recipe `evaluator:`)")
    etrain.add_argument("recipe")
    etrain.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    etrain.add_argument("--overwrite", action="store_true", help="delete a non-empty output_dir first")

    select = sub.add_parser(
        "select", parents=[common], help="best-of-K: generate K candidates, pick with an evaluator"
    )
    select.add_argument("prompts", nargs="*", help="prompts (each sent as a user message)")
    select.add_argument("--evaluator", required=True, help="a directory saved by `verirl evaluator train`")
    select.add_argument("--model", default=None, help="the generator: alias, local dir or Hub id")
    select.add_argument(
        "--groups", default=None, help="a groups JSONL file (context, candidates): score, no generation"
    )
    select.add_argument("--backend", default="hf", choices=["hf", "vllm", "vllm-server"], help="how to generate")
    select.add_argument("--url", default=None, help="with --backend vllm-server: http://HOST:PORT")
    select.add_argument("-k", type=int, default=8)
    select.add_argument("--temperature", type=float, default=0.7)
    select.add_argument("--max-new-tokens", type=int, default=32)
    select.add_argument("--seed", type=int, default=0)

    score = sub.add_parser("score", parents=[common], help="score images with an image reward")
    ssub = score.add_subparsers(dest="score_command", metavar="REWARD")
    tp = ssub.add_parser(
        "textpecker", parents=[common], help="TextPecker: semantic match + glyph soundness of rendered text"
    )
    tp.add_argument("images", nargs="+", metavar="IMAGE")
    tp.add_argument("--text", required=True, help="the text the images should show")
    tp.add_argument("--omega", type=float, default=1.0, help="anomaly penalty (1: evaluation, 5: training reward)")
    tp.add_argument("--semantic-weight", type=float, default=0.5)
    tp.add_argument("--structural-weight", type=float, default=0.5)

    tpk = sub.add_parser("textpecker", parents=[common], help="TextPecker synthesis engine and anomaly detector")
    tsub = tpk.add_subparsers(dest="textpecker_command", metavar="ACTION")
    syn = tsub.add_parser("synth", parents=[common], help="render text lines with stroke edits and per-char labels")
    syn.add_argument("--out", required=True)
    syn.add_argument("--n", type=int, default=100)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--heldout-fonts", action="store_true", help="use the fonts kept out of detector training")
    syn.add_argument("--p-edit", type=float, default=0.3, help="probability that a character is edited")
    syn.add_argument("--script", choices=("en", "zh"), default="en")
    tdet = tsub.add_parser("train-detector", parents=[common], help="train the character anomaly detector")
    tdet.add_argument("--out", required=True, help="directory for detector.safetensors and detector_metrics.json")
    tdet.add_argument("--n-train", type=int, default=6000, help="training lines per script")
    tdet.add_argument("--n-heldout", type=int, default=800, help="held-out lines per script")
    tdet.add_argument("--epochs", type=int, default=20)
    tdet.add_argument("--seed", type=int, default=1)

    gly = sub.add_parser("glyph", parents=[common], help="the tiny text-to-image demo model (Flow-GRPO on a CPU)")
    gsub = gly.add_subparsers(dest="glyph_command", metavar="ACTION")
    gpre = gsub.add_parser("pretrain", parents=[common], help="train the tiny SD3 glyph pipeline from scratch")
    gpre.add_argument("--out", required=True, help="directory for the diffusers pipeline (save_pretrained)")
    gpre.add_argument("--steps", type=int, default=1000, help="transformer/text-encoder steps")
    gpre.add_argument("--vae-steps", type=int, default=600)
    gpre.add_argument("--batch-size", type=int, default=32)
    gpre.add_argument("--n-train", type=int, default=3000, help="training strings (the recipe's data.n_train)")
    gpre.add_argument("--max-len", type=int, default=4)
    gpre.add_argument("--seed", type=int, default=0)

    srv = sub.add_parser(
        "serve", parents=[common], help="serve a model with vLLM for rollouts (recipes: generator.backend vllm-server)"
    )
    srv.add_argument("model", help="alias, local dir or Hub id")
    srv.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept trainers on other hosts")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto (the checkpoint's)")
    srv.add_argument("--max-model-len", type=int, default=None)
    srv.add_argument("--kv-cache-gib", type=int, default=2, help="CPU: KV cache size in GiB")
    srv.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="CUDA: share of GPU memory")
    srv.add_argument("--compile", action="store_true", help="compile the model (slow start, a little faster)")
    srv.add_argument("--seed", type=int, default=0)

    models = sub.add_parser("models", parents=[common], help="built-in models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    msub.add_parser("list", parents=[common], help="built-in model aliases and whether they are prepared")
    prep = msub.add_parser("prepare", parents=[common], help="convert a built-in model into the cache (once)")
    prep.add_argument("alias", nargs="?", default="smollm2-135m-instruct")
    return parser


# --------------------------------------------------------------------------------------------------- train


def _model_line(recipe: Any) -> str:
    from verirl.models import classify_model

    if recipe.trainer == "flow_grpo":
        kind = "local diffusers pipeline" if Path(recipe.model.name).expanduser().exists() else "hub"
        from verirl.rl.flow_grpo import LORA_BY_TRANSFORMER, LORA_DEFAULTS

        index = Path(recipe.model.name).expanduser() / "model_index.json"
        transformer = json.loads(index.read_text()).get("transformer", [None, None])[1] if index.is_file() else None
        rank = LORA_BY_TRANSFORMER.get(transformer, (None, {}))[1]  # the Hub's pipeline class is known only at load
        lora = {**LORA_DEFAULTS, **rank, **(recipe.model.lora or {})}
        return f"{recipe.model.name} ({kind}; dtype {recipe.model.dtype}, LoRA r={lora['r']})"
    source = classify_model(recipe.model.name)
    model_line = f"{recipe.model.name} ({source.kind}"
    if source.kind == "builtin":
        ready = (Path(source.path) / ".verirl-ready").is_file()
        model_line += f"; {'prepared in' if ready else 'will be prepared once into'} {source.path}"
    model_line += f"; dtype {recipe.model.dtype}"
    model_line += ", LoRA" if recipe.model.lora is not None else ", full fine-tune"
    model_line += ", trust_remote_code" if recipe.model.trust_remote_code else ""
    return model_line + ")"


def _plan(recipe: Any, launch_cmd: list[str], num_processes: int) -> str:
    from verirl.recipes import build_trainer_config, eval_reward
    from verirl.rewards.base import find_reward

    model_line = _model_line(recipe)
    d = recipe.data
    if d.builtin:
        data_line = (
            f"built-in {d.builtin}: {d.n_train or 'default'} train / {d.n_eval or 'default'} eval, seed {d.seed}"
        )
        if d.options:
            data_line += f", {d.options}"
    else:
        data_line = f"load_dataset({d.path!r}, {d.name!r}, data_files={d.data_files!r}, split={d.split!r})"
    reward_lines = []
    for r in recipe.rewards:
        obj = find_reward(r.name)
        origin = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"
        extra = f", args {r.args}" if r.args else ""
        reward_lines.append(f"{r.name} x{r.weight:g} ({origin}; timeout {r.timeout_s} s{extra})")
    config = build_trainer_config(recipe.trainer, recipe.trainer_args, recipe.output_dir, recipe.file)
    args_line = ", ".join(f"{k}={v}" for k, v in recipe.args.items())
    if recipe.derived:
        args_line += "; set by verirl: " + ", ".join(f"{k}={v}" for k, v in recipe.derived.items())
    lines = [
        ("recipe", recipe.file),
        ("trainer", f"{recipe.trainer} ({type(config).__name__} validated)"),
        ("model", model_line),
        ("data", data_line),
        ("rewards", "; ".join(reward_lines) or "none"),
        ("generator", recipe.generator.backend),
        (
            "advantage",
            "per-prompt group advantages, clipped ratio over the SDE window (Flow-GRPO)"
            if recipe.trainer == "flow_grpo"
            else _advantage_line(recipe.advantage),
        ),
        ("args", args_line or "trl defaults"),
    ]
    if recipe.trainer == "grpo":
        lines.append(
            (
                "batches",
                f"{config.per_device_train_batch_size} completions/device x {num_processes} process(es), "
                f"{config.num_generations} per prompt, generation batch "
                f"{config.per_device_train_batch_size * num_processes * config.steps_per_generation}, "
                f"max_steps {config.max_steps}",
            )
        )
    if recipe.eval.enabled:
        name, _ = eval_reward(recipe)
        lines.append(
            (
                "eval",
                f"{'one ODE image per prompt' if recipe.trainer == 'flow_grpo' else 'greedy'}, "
                f"{name} >= {recipe.eval.threshold:g} counts as correct, "
                f"{'before and ' if recipe.eval.before else ''}after training",
            )
        )
    else:
        lines.append(("eval", "off"))
    lines.append(
        (
            "hub",
            f"push to {recipe.hub.repo_id} ({'private' if recipe.hub.private else 'public'})"
            if recipe.hub.push
            else "no push",
        )
    )
    lines.append(("output_dir", recipe.output_dir))
    lines.append(("launch", "accelerate launch " + " ".join(launch_cmd)))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def _advantage_line(spec: Any) -> str:
    if spec.name == "grpo":
        return "grpo (TRL's reward-derived group advantages)"
    weights = "prompt weights from the frozen model" if spec.prompt_weights else "no prompt weights"
    return (
        f"restrain (label-free): kappa={spec.kappa:g}, delta={spec.delta:g}, sigma={spec.sigma:g}, "
        f"center={spec.center:g}, extractor {spec.extractor}, {weights}"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from verirl import outputs
    from verirl.launch import launch, launch_argv
    from verirl.recipes import cuda_available, load_recipe

    start = time.time()
    if args.num_processes is not None and args.num_processes < 1:
        raise VerirlError(f"--num-processes: expected a positive integer, got {args.num_processes}")
    if args.accelerate_config and not Path(args.accelerate_config).is_file():
        raise VerirlError(f"--accelerate-config: file not found: {args.accelerate_config}")
    n = args.num_processes or 1
    recipe = load_recipe(args.recipe, args.overrides, num_processes=n)
    if recipe.trainer == "evaluator":  # no trainer process to launch: groups, then a small model, in this process
        if args.dry_run:
            print(
                f"trainer evaluator: {recipe.evaluator}\noutput_dir {recipe.output_dir}\ndry run: the recipe is valid"
            )
            return 0
        if args.resume:
            raise VerirlError("--resume: trainer evaluator does not resume; reuse groups with evaluator.groups_from")
        return _train_evaluator(recipe, overwrite=args.overwrite)
    out = Path(recipe.output_dir)
    recipe_yaml = out / outputs.RECIPE
    argv = launch_argv(
        recipe_yaml, args.num_processes, args.accelerate_config, args.resume, args.debug, cuda_available()
    )
    outputs.check_output_dir(out, args.overwrite, args.resume)
    if args.dry_run:
        print(_plan(recipe, argv, n))
        print("dry run: the recipe is valid; nothing was loaded or written")
        return 0

    from verirl.models import BUILTIN_MODELS, prepare_builtin

    if recipe.model.name in BUILTIN_MODELS:
        print(f"[verirl] preparing built-in model {recipe.model.name} (once; cached) ...", file=sys.stderr)
        prepare_builtin(recipe.model.name)
    outputs.prepare_output_dir(out, overwrite=args.overwrite, resume=args.resume)
    _write_recipe(recipe, recipe_yaml)
    print(f"[verirl] launching: accelerate launch {' '.join(argv)}", file=sys.stderr)
    code = launch(argv)
    if code != 0:
        return code
    print(_summary(out, time.time() - start))
    return 0


def _write_recipe(recipe: Any, path: Path) -> None:
    """Write the resolved recipe; on resume keep the previous one if it differs (nothing written is lost)."""
    text = recipe.to_yaml()
    if path.is_file() and path.read_text() != text:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path.rename(path.with_name(f"recipe.{stamp}.yaml"))
    path.write_text(text)


def _summary(out: Path, seconds: float) -> str:
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


# ------------------------------------------------------------------------------------------- other commands


def cmd_push(args: argparse.Namespace) -> int:
    from verirl.hub import push_folder

    url = push_folder(args.output_dir, args.repo_id, private=not args.public, revision=args.revision)
    print(f"pushed {args.output_dir} to {url}")
    return 0


def cmd_rewards(args: argparse.Namespace) -> int:
    from verirl.rewards.base import available_rewards, resolve_reward

    if args.rewards_command == "list":
        infos = available_rewards()
        width = max(len(i.name) for i in infos)
        for info in infos:
            summary = f"  {info.summary}" if info.summary else ""
            print(f"{info.name:<{width}}  {info.kind:<10}  {info.origin}{summary}")
        return 0
    if args.rewards_command == "new":
        from verirl.rewards.scaffold import scaffold

        root = scaffold(args.name, args.dir)
        print(f"created {root}\nnext: pip install -e {root} && verirl rewards check {args.name}")
        return 0
    if args.rewards_command == "check":
        from verirl.rewards.check import check_reward, format_results

        try:
            bound = json.loads(args.args)
        except json.JSONDecodeError as exc:
            raise VerirlError(f"--args: expected a JSON object ({exc.msg})") from None
        if not isinstance(bound, dict):
            raise VerirlError("--args: expected a JSON object, e.g. '{\"max_length\": 64}'")
        columns = {}
        for item in args.column:
            key, sep, value = item.partition("=")
            if not sep:
                raise VerirlError(f"--column {item}: expected KEY=VALUE")
            columns[key] = value
        fn = resolve_reward(args.name, bound)
        results = check_reward(fn, columns, args.timeout)
        print(format_results(args.name, results))
        return 1 if any(r.status == "FAIL" for r in results) else 0
    raise VerirlError("rewards: expected an action: list, new or check")


def cmd_evaluator(args: argparse.Namespace) -> int:
    if args.evaluator_command != "train":
        raise VerirlError("evaluator: expected an action: train")
    from verirl.recipes import apply_overrides, read_yaml, validate

    data = apply_overrides(read_yaml(args.recipe), args.overrides, args.recipe)
    data.setdefault("trainer", "evaluator")
    recipe = validate(data, args.recipe)
    if recipe.trainer != "evaluator":
        raise VerirlError(f"{args.recipe}: trainer: `verirl evaluator train` needs trainer: evaluator")
    return _train_evaluator(recipe, overwrite=args.overwrite)


def _train_evaluator(recipe: Any, overwrite: bool) -> int:
    from verirl import outputs
    from verirl.verifiers.evaluator_run import run_evaluator_recipe, summary

    out = outputs.prepare_output_dir(recipe.output_dir, overwrite=overwrite)
    (out / outputs.RECIPE).write_text(recipe.to_yaml())
    results = run_evaluator_recipe(recipe)
    print(summary(results, out))
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from verirl.generators import SamplingParams
    from verirl.generators.best_of_k import BestOfK
    from verirl.verifiers.flash_evaluator import FlashEvaluator

    if args.k < 1:
        raise VerirlError(f"-k: expected a positive integer, got {args.k}")
    if (args.backend == "vllm-server") != bool(args.url):
        raise VerirlError("--url: give it with --backend vllm-server (and only then), e.g. http://127.0.0.1:8000")
    evaluator = FlashEvaluator.from_pretrained(args.evaluator)
    if args.groups:
        from verirl.verifiers.groups import load_groups

        if args.prompts or args.model:
            raise VerirlError("select: --groups scores given candidates; do not pass prompts or --model with it")
        for group in load_groups(args.groups):
            _print_choice(group.context, BestOfK(None, evaluator).choose(group.context, group.candidates))
        return 0
    if not args.prompts or not args.model:
        raise VerirlError("select: pass prompts and --model (to generate), or --groups FILE (to score)")
    import torch

    from verirl.generators.backends import build_generator
    from verirl.models import load_model
    from verirl.recipes import GeneratorSpec

    if args.backend == "vllm":
        from verirl.generators.vllm import import_vllm

        import_vllm("--backend")
    model, tokenizer, source = load_model(args.model, weights=args.backend == "hf")
    generator = build_generator(
        GeneratorSpec(backend=args.backend, url=args.url),
        model_path=source.path,
        tokenizer=tokenizer,
        model=model,
        model_dtype="auto",
        seed=args.seed,
        autocast_bf16=not torch.cuda.is_available(),
    )
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    prompts = [[{"role": "user", "content": p}] for p in args.prompts]
    for text, choice in zip(
        args.prompts, BestOfK(generator, evaluator, args.k, sampling).select(prompts), strict=True
    ):
        _print_choice(text, choice, with_candidates=True)
    return 0


def _print_choice(prompt: Any, choice: Any, with_candidates: bool = False) -> None:
    """One JSON line per prompt: the pick, its index and every candidate's score (and the candidates if generated)."""
    row = {"prompt": prompt, "index": choice.index, "choice": choice.text}
    if with_candidates:
        row["candidates"] = choice.candidates
    row["scores"] = [round(s, 4) for s in choice.scores]
    print(json.dumps(row, ensure_ascii=False))


def cmd_serve(args: argparse.Namespace) -> int:
    from verirl.generators.vllm import EngineOptions, import_vllm
    from verirl.generators.vllm_server import serve
    from verirl.models import DTYPES, resolve_model

    if args.dtype not in DTYPES:
        raise VerirlError(f"--dtype: expected one of float32, bfloat16, float16, auto; got {args.dtype!r}")
    if not 0 < args.port < 65536:
        raise VerirlError(f"--port: expected 1..65535, got {args.port}")
    import_vllm("serve")
    source = resolve_model(args.model)
    options = EngineOptions(
        dtype=DTYPES[args.dtype],
        max_model_len=args.max_model_len,
        enforce_eager=not args.compile,
        gpu_memory_utilization=args.gpu_memory_utilization,
        kv_cache_gib=args.kv_cache_gib,
        seed=args.seed,
    )
    try:
        serve(source.path, args.host, args.port, options)
    except OSError as exc:
        raise VerirlError(f"--port {args.port}: cannot listen on {args.host}:{args.port} ({exc.strerror})") from exc
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    if args.score_command != "textpecker":
        raise VerirlError("score: name a reward (verirl score textpecker --text TEXT IMAGE ...)")
    try:
        from verirl.rewards.textpecker import TextPecker

        scorer = TextPecker(
            omega=args.omega, semantic_weight=args.semantic_weight, structural_weight=args.structural_weight
        )
        scores = scorer.score(args.images, [args.text] * len(args.images))
    except (ValueError, ImportError) as exc:
        raise VerirlError(str(exc)) from exc
    for path, result in zip(args.images, scores, strict=True):
        row = {"image": path, **result.as_dict()}
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, ensure_ascii=False))
    unreadable = [path for path, result in zip(args.images, scores, strict=True) if result.reward is None]
    if unreadable:  # every image was still scored and printed; the exit code says some input was bad
        print(
            f"verirl: error: {len(unreadable)} of {len(scores)} images could not be read: {unreadable[0]}"
            + (" ..." if len(unreadable) > 1 else "")
            + ' (see "reason")',
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_textpecker(args: argparse.Namespace) -> int:
    if args.textpecker_command == "synth":
        from verirl.rewards.textpecker.synth import SCRIPTS, synthesize, write_dataset

        if args.n < 1:
            raise VerirlError(f"--n: expected a positive number of lines, got {args.n}")
        if not 0.0 <= args.p_edit <= 1.0:
            raise VerirlError(f"--p-edit: expected a probability in [0, 1], got {args.p_edit}")
        out = Path(args.out)
        if (out / "labels.jsonl").exists():
            raise VerirlError(f"--out {out}: already holds a dataset (labels.jsonl); choose another directory")
        fonts = SCRIPTS[args.script][1 if args.heldout_fonts else 0]
        try:
            labels = write_dataset(synthesize(args.n, args.seed, fonts, args.p_edit, args.script), out)
        except FileNotFoundError as exc:
            raise VerirlError(str(exc)) from exc
        print(f"[verirl] wrote {args.n} line images and {labels}")
        return 0
    if args.textpecker_command == "train-detector":
        from verirl.rewards.textpecker.training import run

        out = Path(args.out)
        if (out / "detector.safetensors").exists():
            raise VerirlError(f"--out {out}: already holds detector.safetensors; choose another directory")
        results = run(out, args.n_train, args.n_heldout, args.epochs, args.seed, log=lambda m: print(f"[verirl] {m}"))
        summary = {
            script: {k: round(results[script][k]["f1"], 3) for k in ("learned", "evidence_thresholds", "plain_ocr")}
            for script in ("en", "zh")
        }
        print("[verirl] held-out F1: " + json.dumps(summary))
        print(f"[verirl] weights and metrics in {out}")
        return 0
    raise VerirlError("textpecker: name an action (synth, train-detector)")


def cmd_glyph(args: argparse.Namespace) -> int:
    if args.glyph_command != "pretrain":
        raise VerirlError("glyph: expected an action: pretrain")
    for name in ("steps", "vae_steps", "batch_size", "n_train", "max_len"):
        if getattr(args, name) < 1:
            raise VerirlError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    out = Path(args.out)
    if (out / "model_index.json").exists():
        raise VerirlError(f"--out {out}: already holds a pipeline (model_index.json); choose another directory")
    from verirl.glyph.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(n_train=args.n_train, max_len=args.max_len, vae_steps=args.vae_steps, steps=args.steps,
                            batch_size=args.batch_size, seed=args.seed)  # fmt: skip
    result = pretrain(out, config)
    print(
        f"[verirl] pipeline saved to {out} in {result['train_seconds']:.0f} s; held-out OCR exact match "
        f"{100 * result['held_out']['exact_match']:.1f}% ({result['held_out']['n']} strings); details in "
        f"{out / 'pretrain.json'}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from verirl.models import BUILTIN_MODELS, cache_dir, prepare_builtin

    if args.models_command == "list":
        for alias, info in BUILTIN_MODELS.items():
            ready = (cache_dir() / "models" / alias / ".verirl-ready").is_file()
            print(
                f"{alias}  {info.base_model}  from pip package {info.pip_name}  "
                f"{'prepared: ' + str(cache_dir() / 'models' / alias) if ready else 'not prepared yet'}"
            )
        return 0
    if args.models_command == "prepare":
        path = prepare_builtin(args.alias)
        print(path)
        return 0
    raise VerirlError("models: expected an action: list or prepare")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="[verirl] %(message)s")
    handlers = {
        "train": cmd_train,
        "push": cmd_push,
        "rewards": cmd_rewards,
        "models": cmd_models,
        "evaluator": cmd_evaluator,
        "select": cmd_select,
        "score": cmd_score,
        "serve": cmd_serve,
        "textpecker": cmd_textpecker,
        "glyph": cmd_glyph,
    }
    if args.command not in handlers:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except VerirlError as exc:
        if args.debug:
            raise
        print(f"verirl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("verirl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
