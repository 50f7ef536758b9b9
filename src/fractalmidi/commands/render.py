"""``fractalmidi render IN.mid|IN.npy``: draw a roll as PNG / GIF, play it as WAV (see :mod:`fractalmidi.viz`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalmidi.data.grid import DEFAULT_GRID, GRID_HELP
from fractalmidi.viz import RenderRequest, printable, render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.mid|IN.npy",
                        help="MIDI file, or a .npy roll (128,T)/(1,128,T) or frames (S,1,128,T) of a generation")
    parser.add_argument("--png", metavar="OUT.png", help="piano-roll picture")
    parser.add_argument("--wav", metavar="OUT.wav", help="audio through FluidSynth and the General-MIDI soundfont")
    parser.add_argument("--gif", metavar="OUT.gif",
                        help="animation: the frames of a .npy, or the piece drawn left to right")
    parser.add_argument("--grid", default=DEFAULT_GRID, help=f"time grid: {GRID_HELP} (default {DEFAULT_GRID})")
    parser.add_argument("--sustain", action="store_true", help="extend notes held by the sustain pedal (MIDI input)")
    parser.add_argument("--tempo", type=float,
                        help="tempo in BPM for a .npy's audio (default 120) or to override the MIDI's")
    parser.add_argument("--title", help="title above the picture (default: the input's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    request = RenderRequest(input=args.input, png=args.png, wav=args.wav, gif=args.gif, grid=args.grid,
                            sustain=args.sustain, tempo=args.tempo, title=args.title, overwrite=args.overwrite)
    steps = render(request)
    print(printable(f"{Path(args.input)} (1, 128, {steps}) -> {', '.join(map(str, request.outputs))}"))
    return 0
