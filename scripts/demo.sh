#!/usr/bin/env bash
# Set up (if needed) and run the end-to-end demo on the embedded Bach chorales.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fractalmidi demo "$@"
