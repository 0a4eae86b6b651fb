"""``verirl verifiers list | check NAME | new NAME``: the verifier plug-ins, as ``verirl rewards`` for rewards.

    verirl verifiers list                                             built-in, registered and plug-in verifiers
    verirl verifiers check NAME [--args JSON] [--column K=V ...] [--timeout S]
                                                                      run it on sample and hostile completions
    verirl verifiers new NAME [--dir DIR]                             scaffold a plug-in package

NAME is a built-in (``exact_answer``), a plug-in's entry point, ``reward:REWARD`` or ``package.module:attr``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from verirl.cli.options import column_values, json_args
from verirl.errors import VerirlError


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    verifiers = subparsers.add_parser(
        "verifiers", parents=list(parents), help="list, scaffold and check verifier plug-ins"
    )
    vsub = verifiers.add_subparsers(dest="verifiers_command", metavar="ACTION")
    vsub.add_parser("list", parents=list(parents), help="built-in and plug-in verifiers, with where each comes from")
    new = vsub.add_parser("new", parents=list(parents), help="scaffold a verifier plug-in package")
    new.add_argument("name")
    new.add_argument("--dir", default=".", help="where to create verirl-verifier-NAME (default: here)")
    check = vsub.add_parser("check", parents=list(parents), help="run a verifier on sample and hostile completions")
    check.add_argument("name", help="a verifier name, plug-in, reward:REWARD or module:attr")
    check.add_argument("--args", default="{}", help="JSON keyword arguments for the verifier's factory")
    check.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset column the verifier reads from its context, same value for every sample",
    )
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per verify call (default 60)")


def cmd_verifiers(args: argparse.Namespace) -> int:
    from verirl.verifiers.registry import available_verifiers, resolve_verifier

    action = getattr(args, "verifiers_command", None)
    if action == "list":
        from verirl.cli.options import print_plugins

        print_plugins(available_verifiers())
        return 0
    if action == "new":
        from verirl.verifiers.scaffold import scaffold

        root = scaffold(args.name, args.dir)
        print(f"created {root}\nnext: pip install -e {root} && verirl verifiers check {args.name}")
        return 0
    if action == "check":
        from verirl.verifiers.check import check_verifier, format_results

        bound = json_args(args.args)
        columns = column_values(args.column)
        if args.timeout <= 0:
            raise VerirlError(f"--timeout: expected a positive number of seconds, got {args.timeout:g}")
        verifier = resolve_verifier(args.name, bound)
        results = check_verifier(verifier, columns, args.timeout)
        print(format_results(args.name, results))
        return 1 if any(r.status == "FAIL" for r in results) else 0
    raise VerirlError("verifiers: expected an action: list, new or check")
