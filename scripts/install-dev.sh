#!/usr/bin/env bash
# Install forge-kernel and every plugin under plugins/ (editable) into the active Python
# environment, with the extras the test suite needs where a plugin has them: `test`, `triton`
# (the cuda plugin's kernels, run by Triton's interpreter on the CPU) and `semantic` (the
# cache's embedding tier). torch is pinned through constraints.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
plugins=()
for dir in plugins/forge-plugin-*/; do
  dir=${dir%/}
  [[ -f $dir/pyproject.toml ]] || continue
  extras=$(python - "$dir/pyproject.toml" <<'PY'
import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"].get("optional-dependencies", {})
print(",".join(e for e in ("test", "triton", "semantic") if e in extras))
PY
)
  plugins+=(-e "$dir${extras:+[$extras]}")
done
python -m pip install -q -c constraints.txt --upgrade pip
# torch first, alone: its CPU wheel must win before anything can ask for another build
python -m pip install -q -c constraints.txt "torch==2.13.0"
python -m pip install -q -c constraints.txt -e ".[test]" "${plugins[@]}"
