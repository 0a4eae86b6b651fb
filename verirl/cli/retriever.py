"""``verirl serve-retriever``: the search agent's text and image indexes as one HTTP service.

    verirl serve-retriever [--host 127.0.0.1] [--port 8900] [--corpus wiki-vital|FILE.jsonl]
                           [--images flags|FILE.jsonl|none] [--limit N]

Training processes and rollout hosts then point at it (``http://HOST:PORT``) instead of each building the indexes.
The first start on the full corpus encodes it (about 5 minutes on two cores; cached afterwards).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from verirl.errors import VerirlError

COMMAND = "serve-retriever"


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] | None = None) -> None:
    """Register ``serve-retriever`` on the ``verirl`` subparsers (``parents``: the shared ``--debug`` parser; without
    it, the command gets its own ``--debug``). Its handler is :func:`cmd_serve_retriever`."""
    p = subparsers.add_parser(
        COMMAND,
        parents=list(parents or []),
        help="serve the search agent's text and image retrieval over HTTP (shared by trainers and rollout hosts)",
    )
    if not parents:
        p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs (one line per request)")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept clients on other hosts")
    p.add_argument("--port", type=int, default=8900, help="0 picks a free port (printed)")
    p.add_argument("--corpus", default="wiki-vital", help="wiki-vital (built in) or a JSONL file of {title, text}")
    p.add_argument(
        "--images", default="flags", help="flags (built in), a JSONL file of {image, title}, or none (no image search)"
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="index only the first N passages (tests)")


def cmd_serve_retriever(args: argparse.Namespace) -> int:
    from verirl.search.service import build_local, serve

    if not 0 <= args.port < 65536:
        raise VerirlError(f"--port: expected 0..65535, got {args.port}")
    if args.limit is not None and args.limit < 1:
        raise VerirlError(f"--limit: expected a positive number of passages, got {args.limit}")
    retriever = build_local(args.corpus, args.images, args.limit)
    health = retriever.health()

    def ready(url: str) -> None:
        print(f"retriever ready on {url} ({health['passages']} passages, {health['images']} images)", flush=True)

    try:
        serve(args.host, args.port, retriever.text_index, retriever.image_index, on_ready=ready)
    except OSError as exc:
        raise VerirlError(
            f"--port {args.port}: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})"
        ) from exc
    return 0
