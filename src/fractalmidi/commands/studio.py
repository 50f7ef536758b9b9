"""``fractalmidi studio``: start the local web page and print its address (see :mod:`fractalmidi.studio.server`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalmidi.studio.server import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_THREADS, ServerOptions, run_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, default=None,
                        help="a training checkpoint (.ckpt), run folder or shipped model to generate with; without "
                             "one the page opens, draws and plays MIDI but cannot generate")
    source.add_argument("--model", dest="checkpoint", type=Path, help="a shipped model (see 'fractalmidi models')")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 opens "
                             "the page to your network)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"CPU threads for generation "
                             f"(default {DEFAULT_THREADS}: steadiest when the CPU is shared)")


def run(args: argparse.Namespace) -> int:
    run_server(ServerOptions(checkpoint=args.checkpoint, host=args.host, port=args.port, threads=args.threads))
    return 0
