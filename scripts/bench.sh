#!/usr/bin/env bash
# Runs every benchmark; each prints JSON lines on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAIRN_BIN="$(pwd)/build/src/main/cairn"
for b in build/bench/*_bench; do
  echo "# $b" >&2
  "$b"
done
# Dataset benchmarks beside openssl, git and git-lfs (random data under /tmp; set TMPDIR to move it).
echo "# bench/data_bench.py" >&2
/usr/bin/python3 bench/data_bench.py
# Model serving beside in-process calls and Flask + gunicorn (python3-flask, gunicorn).
echo "# bench/serving_bench.py" >&2
/usr/bin/python3 bench/serving_bench.py
