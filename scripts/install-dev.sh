#!/usr/bin/env bash
# Install forge-kernel and every plugin under plugins/ (editable) plus test tools into the
# active Python environment. torch is pinned through constraints.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
plugins=()
for dir in plugins/forge-plugin-*/; do plugins+=(-e "$dir"); done
python -m pip install -q -c constraints.txt --upgrade pip
# torch first, alone: its CPU wheel must win before anything can ask for another build
python -m pip install -q -c constraints.txt "torch==2.13.0"
python -m pip install -q -c constraints.txt -e ".[test]" "${plugins[@]}"
