#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
. .venv/bin/activate
bash scripts/install-dev.sh
bash scripts/install-services.sh
python -m pytest "$@"
