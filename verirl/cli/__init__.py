"""The ``verirl`` command.

    verirl train RECIPE [--dry-run] [--set key=value ...] [--num-processes N] [--accelerate-config FILE]
                        [--resume | --overwrite]
    verirl push OUTPUT_DIR --repo-id ID [--public] [--revision BRANCH]
    verirl rewards list | new NAME [--dir DIR] | check NAME [--args JSON] [--column KEY=VALUE ...]
    verirl verifiers list | new NAME [--dir DIR] | check NAME [--args JSON] [--column KEY=VALUE ...] [--timeout S]
    verirl agent ask | eval ...            the search agent (docs/search_agent.md)
    verirl rec eval | recommend ...         generative recommenders (docs/recommendation.md)
    verirl models list | prepare [ALIAS]
    verirl trainers list | show NAME | show --all
    verirl evaluator train RECIPE [--set key=value ...] [--overwrite]
    verirl select --evaluator DIR (--model MODEL PROMPT ... | --groups FILE) [-k 8]
    verirl score textpecker IMAGE ... --text TEXT
    verirl textpecker synth | train-detector --out DIR
    verirl glyph pretrain --out DIR [--steps N]

Bad input exits with code 2 and one line naming the file/key and what was expected; ``--debug`` shows tracebacks.
Ctrl-C exits 130; output piped into a reader that stops early (``| head``) exits 141 without a message.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

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

    trainers = sub.add_parser("trainers", parents=[common], help="the trainers a recipe can name, and their fields")
    tsub_ = trainers.add_subparsers(dest="trainers_command", metavar="ACTION")
    tsub_.add_parser("list", parents=[common], help="built-in and plug-in trainers")
    tshow = tsub_.add_parser("show", parents=[common], help="a trainer's recipe sections and fields, with their help")
    tshow.add_argument("name", nargs="?", help="a trainer name or package.module:TRAINER")
    tshow.add_argument("--all", action="store_true", help="every built-in trainer and the shared sections (markdown)")

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
    tp.add_argument(
        "--anomaly-count",
        choices=("flags", "expected"),
        default="flags",
        help="N_a: flagged characters or the sum of the detector's probabilities (docs/textpecker.md)",
    )
    tp.add_argument("--threshold", type=float, help="the detector's flag probability (default: the shipped one)")
    tp.add_argument(
        "--unread",
        choices=("anomaly", "ignore"),
        default="anomaly",
        help="target characters the OCR did not read: count as flawed in S_Q, or ignore (docs/textpecker.md)",
    )
    tp.add_argument(
        "--tie-break",
        type=float,
        default=0.0,
        help="share of the reward given to the detector's summed probabilities, to order ties (docs/textpecker.md)",
    )

    tpk = sub.add_parser("textpecker", parents=[common], help="TextPecker synthesis engine and anomaly detector")
    tsub = tpk.add_subparsers(dest="textpecker_command", metavar="ACTION")
    syn = tsub.add_parser("synth", parents=[common], help="render text lines with damaged glyphs and per-char labels")
    syn.add_argument("--out", required=True)
    syn.add_argument("--n", type=int, default=100)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--heldout-fonts", action="store_true", help="use the fonts kept out of detector training")
    syn.add_argument("--p-edit", type=float, default=0.3, help="probability that a character is damaged")
    syn.add_argument("--script", choices=("en", "zh"), default="en")
    syn.add_argument("--damage", default=None, help="comma-separated damage kinds (default: all)")
    tdet = tsub.add_parser("train-detector", parents=[common], help="train the character anomaly detector")
    tdet.add_argument("--out", required=True, help="directory for detector.safetensors and detector_metrics.json")
    tdet.add_argument(
        "--n-train", type=int, default=40000, help="training lines per script (40,000: ~16 GB of memory, 20,000: half)"
    )
    tdet.add_argument("--n-heldout", type=int, default=800, help="held-out lines per script (all damage kinds)")
    tdet.add_argument("--n-per-damage", type=int, default=150, help="held-out lines per script and damage kind")
    tdet.add_argument("--epochs", type=int, default=14)
    tdet.add_argument("--seed", type=int, default=1)
    tdet.add_argument(
        "--weights", help="evaluate these detector weights instead of training (threshold chosen again, metrics, copy)"
    )

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

    from verirl.cli import agent, rec, retriever, verifiers

    agent.add_parser(sub, [common])
    rec.add_parser(sub, [common])
    retriever.add_parser(sub, [common])
    verifiers.add_parser(sub, [common])

    models = sub.add_parser("models", parents=[common], help="built-in models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    msub.add_parser("list", parents=[common], help="built-in model aliases and whether they are prepared")
    prep = msub.add_parser("prepare", parents=[common], help="convert a built-in model into the cache (once)")
    prep.add_argument("alias", nargs="?", default="smollm2-135m-instruct")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="[verirl] %(message)s")
    from verirl.cli import agent, rec, reference, retriever, tools, train, verifiers

    handlers = {
        "train": train.cmd_train,
        "push": train.cmd_push,
        "evaluator": train.cmd_evaluator,
        "trainers": reference.cmd_trainers,
        "rewards": tools.cmd_rewards,
        "models": tools.cmd_models,
        "select": tools.cmd_select,
        "score": tools.cmd_score,
        "serve": tools.cmd_serve,
        "textpecker": tools.cmd_textpecker,
        "glyph": tools.cmd_glyph,
        "agent": agent.cmd_agent,
        "rec": rec.cmd_rec,
        "verifiers": verifiers.cmd_verifiers,
        "serve-retriever": retriever.cmd_serve_retriever,
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
    except BrokenPipeError:  # `verirl agent eval ... | head`: the reader is gone, which is not an error of ours
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command stopped by its reader


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
