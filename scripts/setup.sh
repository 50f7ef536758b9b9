#!/usr/bin/env bash
# Idempotent set-up: a project virtual environment in .venv with every dependency.
# torch is pinned to the CPU wheel 2.13.0 when no torch is installed (a plain `torch`
# requirement would pull a multi-GB CUDA build); a torch you installed yourself is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install -q "torch==2.13.0"
fi
if ! .venv/bin/python -c "import fractalmidi, pytest, pretty_midi" 2>/dev/null \
    || [ pyproject.toml -nt .venv/.fractalmidi-installed ]; then
    .venv/bin/python -m pip install -q -e ".[dev]"
    touch .venv/.fractalmidi-installed
fi
# Optional audio: FluidSynth and a General-MIDI soundfont (WAV rendering). Best effort only.
if ! command -v fluidsynth >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q fluidsynth fluid-soundfont-gm >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fluidsynth fluid-soundfont-gm >/dev/null 2>&1)) \
        || echo "note: could not install fluidsynth; WAV rendering will be unavailable" >&2
fi
