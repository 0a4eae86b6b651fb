"""The training worker: ``accelerate launch -m verirl.worker --recipe OUTPUT_DIR/recipe.yaml``.

``verirl train`` validates the recipe, prepares the output directory and launches this module once per process
(trainers declared ``launch="in_process"`` run :func:`train` in the command's own process). It loads the recipe and
hands it to its trainer declaration's ``run`` with a :class:`~verirl.rl.context.RunContext` (results, held-out
evaluation, checkpoints, model card, Hub push). Errors are one line; the traceback goes to ``error.log``.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError, first_line
from verirl.launch import STOP_SIGNALS

logger = logging.getLogger("verirl")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Terminated(BaseException):
    """A stop signal reached the worker (a scheduler's SIGTERM, a closed terminal, or its launcher's death). A
    BaseException like KeyboardInterrupt, so no ``except Exception`` in a trainer or reward wrapper swallows it: the
    run unwinds (vLLM engine, process group) and checkpoints already written stay."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum  # as a shell reports a process the signal stopped


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


def stop_with_launcher() -> None:
    """Turn SIGTERM/SIGHUP into :class:`Terminated`, and on Linux have the kernel send SIGTERM when the launching
    process (``verirl train``, or torch's elastic agent) dies, even by SIGKILL: a worker must never train on,
    orphaned, after its command is gone (accelerate's single-process launcher does not forward signals)."""
    parent = os.getppid()
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_terminated)
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: the launcher's forwarding (verirl.launch) remains
        return
    if os.getppid() != parent:  # the launcher died before prctl took effect
        raise Terminated(signal.SIGTERM)


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="[verirl] %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def train(recipe_path: str, resume: bool = False) -> dict[str, Any]:
    """Run one recipe in this process (one rank of an accelerate launch, or the whole run of an in-process
    trainer). Returns the results dict."""
    from verirl.recipes import load_recipe
    from verirl.rl.context import RunContext

    recipe = load_recipe(recipe_path, num_processes=int(os.environ.get("WORLD_SIZE", "1")))
    ctx = RunContext(recipe, recipe.declaration, resume=resume, is_main=int(os.environ.get("RANK", "0")) == 0)
    return recipe.declaration.run(ctx)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verirl-worker", description="verirl training worker (use `verirl train`)")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    try:
        stop_with_launcher()
    except Terminated as exc:
        print("terminated before training started: the launcher exited", file=sys.stderr)
        return exc.exit_code
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
    except Terminated as exc:
        print(f"terminated ({exc}); checkpoints already written are kept (continue with --resume)", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - reported in one line; the traceback goes to error.log
        log = Path(args.recipe).parent / "error.log"
        try:
            log.write_text(traceback.format_exc())
        except OSError:
            pass
        if args.debug:
            traceback.print_exc()
        print(
            f"error: training failed: {type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''} "
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
    finished run (measurements: docs/benchmarks.md, "Worker teardown")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception as exc:  # noqa: BLE001 - the run's own exit code and message matter more
            logger.debug("destroy_process_group failed: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
