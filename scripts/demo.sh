#!/usr/bin/env bash
# The end-to-end demo on the embedded default: a fresh data directory, a
# tracking server, several training runs of a scikit-learn model logged
# through the Python SDK, then a search for the best run and its artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CAIRN="$ROOT/build/src/main/cairn"
PY=/usr/bin/python3
DATA=$(mktemp -d /tmp/cairn-demo.XXXXXX)
LOG="$DATA/server.log"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting a Cairn server on a fresh data directory ($DATA)"
"$CAIRN" server --port 0 --data-dir "$DATA/cairn-data" > "$DATA/server.out" 2> "$LOG" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$DATA/server.out" 2>/dev/null && break
  sleep 0.1
done
URL=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$DATA/server.out")
[ -n "$URL" ] || { echo "the server did not start:"; cat "$LOG"; exit 1; }
export CAIRN_URL="$URL"
echo "server at $URL (the mlflow client works too: MLFLOW_TRACKING_URI=$URL)"

say "Training: 6 runs of scikit-learn models on the breast-cancer data set, logged through the SDK"
runs=(
  "--model logreg --C 0.05"
  "--model logreg --C 1.0"
  "--model rf --n-estimators 50 --max-depth 3"
  "--model rf --n-estimators 200"
  "--model gbt --n-estimators 50 --learning-rate 0.1"
  "--model gbt --n-estimators 150 --learning-rate 0.05 --subsample 0.8"
)
for args in "${runs[@]}"; do
  echo "-- train.py $args"
  # shellcheck disable=SC2086
  $PY examples/train.py --dataset breast_cancer --experiment tumour-classifier $args
done

say "All runs, best first (cairn runs search)"
"$CAIRN" runs search --experiment tumour-classifier --order-by "metrics.test_accuracy DESC" \
  --order-by "metrics.test_log_loss ASC"

say "Only tree models above 0.9 accuracy (MLflow filter grammar)"
"$CAIRN" runs search --experiment tumour-classifier \
  --filter "params.model != 'logreg' and metrics.test_accuracy > 0.9" --order-by "metrics.test_accuracy DESC"

say "The best run, with its params, metrics and artifacts"
$PY examples/find_best.py --experiment tumour-classifier --metric test_accuracy --top 3 --download "$DATA/best"
BEST=$("$CAIRN" --json runs search --experiment tumour-classifier --order-by "metrics.test_accuracy DESC" -n 1 |
       $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["info"]["run_id"])')
"$CAIRN" runs show "$BEST"
echo
"$CAIRN" artifacts ls "$BEST"
echo
echo "Learning curve of the best run (full metric history):"
"$CAIRN" runs metric "$BEST" lc_test_accuracy

say "Stopping the server and checking the data directory (cairn fsck)"
kill -TERM $SERVER
wait $SERVER || true
trap - EXIT
"$CAIRN" --data-dir "$DATA/cairn-data" fsck
echo
echo "Demo data kept in $DATA (remove it with: rm -rf $DATA)"
