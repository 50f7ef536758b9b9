"""The ``fractalmidi`` command line: picks the command and runs it with one-line errors.

Each command lives in its own module of :mod:`fractalmidi.commands` exposing
``add_arguments(parser)`` and ``run(args) -> int`` (and ``INTERMIXED = True`` when its positional
arguments may come between options); modules are imported only when their command runs, so
``--help`` and light commands stay fast (no torch import for ``render --help``).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from collections.abc import Sequence

from fractalmidi import __version__
from fractalmidi.errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("fractalmidi.commands.prepare", "MIDI folder / known dataset -> cached piano-rolls + splits"),
    "convert": ("fractalmidi.commands.convert", "MIDI -> piano-roll -> MIDI round trip (hear and measure it)"),
    "render": ("fractalmidi.commands.render", "draw a MIDI file or roll as PNG (and WAV through FluidSynth)"),
    "info": ("fractalmidi.commands.info", "parameters of a model preset, per level and in total"),
    "train": ("fractalmidi.commands.train", "train a model from a YAML config with key=value overrides"),
    "generate": ("fractalmidi.commands.generate", "compose: unconditional, continue or inpaint from a checkpoint"),
    "evaluate": ("fractalmidi.commands.evaluate", "compare generated music with a reference set"),
    "demo": ("fractalmidi.commands.demo", "the whole loop on the embedded Bach chorales, on a CPU"),
    "models": ("fractalmidi.commands.models", "the models shipped with fractalmidi (generate --model NAME)"),
    "export": ("fractalmidi.commands.export", "a trained run -> a slim inference checkpoint (weights + config)"),
    "studio": ("fractalmidi.commands.studio", "local web page: open MIDI, paint a region, regenerate, listen"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fractalmidi",
        description="Learn to compose MIDI music from your own MIDI collection.",
        epilog="Run 'fractalmidi COMMAND --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fractalmidi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"fractalmidi {name}", description=summary)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    module.add_arguments(parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in COMMANDS:
        parser = _top_parser()
        if not args_list:
            parser.print_help()
            return 0
        parser.parse_args(args_list[:1])  # prints help/version or the unknown-command error
        return 2
    name, rest = args_list[0], args_list[1:]
    parser, module = _command_parser(name)
    args = parser.parse_intermixed_args(rest) if getattr(module, "INTERMIXED", False) else parser.parse_args(rest)
    previous = _stop_on_sigterm()
    try:
        return int(module.run(args) or 0)
    except (UserError, OSError, MemoryError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"fractalmidi {name}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fractalmidi {name}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(err: BaseException) -> str:
    """The message of a user error, or what the system said (disk full, permission, memory) and where."""
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, MemoryError):
        return "out of memory; ask for less (a smaller --batch-size, fewer or shorter pieces)"
    where = f": {err.filename}" if getattr(err, "filename", None) else ""
    reason = err.strerror or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    return f"{reason}{where}"


def _stop_on_sigterm():
    """``kill`` (SIGTERM) unwinds like Ctrl-C, so staging folders and worker processes are cleaned
    up on the way out. Returns the previous handler (None off the main thread)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker thread)
        return None


if __name__ == "__main__":
    raise SystemExit(main())
