#!/usr/bin/env bash
# The end-to-end demo on the embedded default: a fresh data directory, a
# server, a versioned dataset (train/test splits, the test split sealed,
# profiles), several training runs of scikit-learn models on a checkout of it
# logged through the Python SDK, a search for the best run and its artifacts,
# a new data version with its diff, and which runs used which data.
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

say "A versioned dataset: the breast-cancer data as train/test CSV files, the test split sealed"
$PY examples/export_dataset.py --dataset breast_cancer --rows 400 --out "$DATA/tumours"
"$CAIRN" data create tumours -d "Wisconsin breast-cancer biopsies (scikit-learn)"
"$CAIRN" data add tumours "$DATA/tumours" -m "first 400 biopsies" \
  --split train='train/**' --split test='test/**' --seal test
"$CAIRN" data show tumours

say "Training: 6 runs of scikit-learn models on a verified checkout of tumours@main, logged through the SDK"
"$CAIRN" data checkout tumours "$DATA/checkout-v1"
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
  $PY examples/train.py --data "$DATA/checkout-v1" --cairn-dataset tumours --experiment tumour-classifier $args
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

say "New data arrives: all 569 biopsies. Only the changed chunks are stored; the diff and history show it"
$PY examples/export_dataset.py --dataset breast_cancer --out "$DATA/tumours-v2"
"$CAIRN" data add tumours "$DATA/tumours-v2" -m "all 569 biopsies"
"$CAIRN" data diff tumours main~1 main
"$CAIRN" data log tumours
echo
echo "The previous version, and the runs trained on it (their inputs name this commit):"
"$CAIRN" data show tumours@main~1 | sed -n '1,6p;/runs that used/,$p'

say "Garbage collection (dry run: nothing is unreachable yet)"
"$CAIRN" gc --dry-run --grace 5m

say "Stopping the server and checking the data directory (cairn fsck)"
kill -TERM $SERVER
wait $SERVER || true
trap - EXIT
"$CAIRN" --data-dir "$DATA/cairn-data" fsck
echo
echo "Demo data kept in $DATA (remove it with: rm -rf $DATA)"
