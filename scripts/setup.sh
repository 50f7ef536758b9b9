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
if ! .venv/bin/python -c "import fractalmidi, pytest, pretty_midi, fastapi, uvicorn, httpx2, selenium" 2>/dev/null \
    || [ pyproject.toml -nt .venv/.fractalmidi-installed ]; then
    .venv/bin/python -m pip install -q -e ".[dev,studio]"
    touch .venv/.fractalmidi-installed
fi
# Debian packages, installed when running as root with apt-get (best effort; the tests that need
# them skip with the reason, except the studio's browser test under CI):
#   fluidsynth + fluid-soundfont-gm: WAV rendering (optional audio);
#   chromium + chromium-driver: the studio's end-to-end test in a real headless browser.
APT_PACKAGES=()
command -v fluidsynth >/dev/null 2>&1 || APT_PACKAGES+=(fluidsynth fluid-soundfont-gm)
{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || APT_PACKAGES+=(chromium chromium-driver)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        { apt-get update -q >/dev/null 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${APT_PACKAGES[@]}" >/dev/null 2>&1; } \
            || echo "note: could not install ${APT_PACKAGES[*]}: WAV rendering / the browser test will be unavailable" >&2
    else
        echo "note: ${APT_PACKAGES[*]} not installed (needs root and apt-get): WAV rendering / the browser test will be unavailable" >&2
    fi
fi
