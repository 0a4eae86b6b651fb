"""Launch the training worker through ``accelerate launch`` (called in-process: one interpreter fewer).

* one process by default: ``--cpu`` without a GPU;
* ``N`` processes without a GPU: ``--multi_gpu`` with gloo (accelerate's ``--cpu --num_processes N`` silently runs
  one process);
* a user's accelerate/DeepSpeed config file is passed through (multi-GPU, multi-node);
* SIGTERM/SIGHUP sent to the command are forwarded to the worker(s), and the command waits for them to unwind
  (accelerate's single-process launcher waits on its child without forwarding; the worker also dies with its
  launcher on Linux, :func:`verirl.worker.stop_with_launcher`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # what stops a run: forwarded here, raised as Terminated in the worker


def launch_argv(
    recipe_yaml: str | Path,
    num_processes: int | None = None,
    accelerate_config: str | None = None,
    resume: bool = False,
    debug: bool = False,
    cuda: bool = False,
) -> list[str]:
    """The ``accelerate launch`` arguments for one run."""
    argv: list[str] = []
    if accelerate_config:
        argv += ["--config_file", str(accelerate_config)]
        if num_processes is not None:
            argv += ["--num_processes", str(num_processes)]
    else:
        n = num_processes or 1
        argv += ["--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if n > 1:
            argv += ["--multi_gpu"]  # on a CPU-only machine this gives N gloo processes
        elif not cuda:
            argv += ["--cpu"]
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // n))
        argv += ["--num_cpu_threads_per_process", threads]
    argv += ["-m", "verirl.worker", "--recipe", str(recipe_yaml)]
    if resume:
        argv.append("--resume")
    if debug:
        argv.append("--debug")
    return argv


def launch(argv: list[str]) -> int:
    """Run ``accelerate launch ARGV``; return the worker's exit code."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(argv)
    try:
        with forward_stop_signals():
            launch_command(args)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    except SystemExit as exc:  # accelerate exits on some launcher failures
        return int(exc.code or 0)
    return 0


@contextmanager
def forward_stop_signals() -> Iterator[None]:
    """While inside: SIGTERM/SIGHUP received by this process are passed on to its child processes (the workers, or
    torch's elastic agent), which unwind and exit; this process keeps waiting for them. Main thread only (elsewhere
    Python cannot install handlers, and nothing is forwarded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import psutil

    me = psutil.Process()

    def forward(signum: int, _frame: object) -> None:
        for child in me.children():
            with suppress(psutil.Error):
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
