#!/usr/bin/env bash
# The end-to-end demo on the embedded default: a fresh data directory, a
# server, a versioned dataset (train/test splits, the test split sealed,
# profiles), a pipeline (prepare -> train -> evaluate on the sealed split)
# whose steps run in sandboxes as tracked runs, a fully cached re-run, a
# step refused for asking for the sealed split; the model registry (a version
# the promotion gate refuses, one it promotes to production), a deployment
# answering Open Inference Protocol requests; several training runs logged
# through the Python SDK and a search for the best one; then new data: its
# commit makes the server re-run only the pipeline steps it affects, and the
# retrained model replaces production while predictions flow.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CAIRN="${CAIRN_BIN:-$ROOT/build/src/main/cairn}"
PY=/usr/bin/python3
DATA=$(mktemp -d /tmp/cairn-demo.XXXXXX)
chmod 755 "$DATA"  # pipeline steps run as an unprivileged user
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

say "A pipeline: prepare -> train -> evaluate, each step in a sandbox (no network, inputs read-only) as a tracked run"
PIPE="$ROOT/examples/tumours-pipeline"
sed -n '/^steps:/,$p' "$PIPE/cairn.yaml"
"$CAIRN" run -f "$PIPE/cairn.yaml"

say "The train step's run: params, metrics it printed, code and environment digests, inputs"
TRAIN_RUN=$("$CAIRN" --json pipelines runs tumours -n 1 |
            $PY -c 'import json,sys; r=json.load(sys.stdin)[0]; print([s["run_id"] for s in r["steps"] if s["step"]=="train"][0])')
"$CAIRN" runs show "$TRAIN_RUN" | grep -v '^  mlflow\.'
EVAL_RUN=$("$CAIRN" --json pipelines runs tumours -n 1 |
           $PY -c 'import json,sys; r=json.load(sys.stdin)[0]; print([s["run_id"] for s in r["steps"] if s["step"]=="evaluate"][0])')
echo
echo "The evaluate step's log (cairn runs logs $EVAL_RUN):"
"$CAIRN" runs logs "$EVAL_RUN"

say "Running it again: every step's code, environment, params and inputs already ran, so nothing runs"
time "$CAIRN" run -f "$PIPE/cairn.yaml"

say "A different model (-p model=rf): prepare stays cached, train and evaluate run"
"$CAIRN" run -f "$PIPE/cairn.yaml" -p model=rf -p n_estimators=200

say "A step that is not an evaluation step asks for the sealed test split: refused before anything runs"
mkdir -p "$DATA/leaky" && cp "$PIPE"/*.py "$DATA/leaky/"
sed '/^triggers:/,/webhook:/d; s/name: tumours/name: tumours-leaky/; s/raw: dataset:tumours@main#train/raw: dataset:tumours@main#test/' \
  "$PIPE/cairn.yaml" > "$DATA/leaky/cairn.yaml"
if "$CAIRN" run -f "$DATA/leaky/cairn.yaml"; then echo "BUG: the sealed split was not refused"; exit 1; fi

say "The model registry: the pipeline's trained model becomes version 1 of model 'tumours'"
"$CAIRN" models register tumours --run "$TRAIN_RUN" --path model --description "XGBoost, 100 trees"
"$CAIRN" models lineage tumours@1

say "A promotion policy: production needs these metrics on the sealed test split, no worse than production"
cat "$PIPE/policy.yaml"
"$CAIRN" models policy set tumours "$PIPE/policy.yaml"

say "A weak model (3 trees, tiny learning rate) is trained and registered as version 2: the gate refuses it"
"$CAIRN" run -f "$PIPE/cairn.yaml" -p n_estimators=3 -p learning_rate=0.02
WEAK_RUN=$("$CAIRN" --json pipelines runs tumours -n 1 |
           $PY -c 'import json,sys; r=json.load(sys.stdin)[0]; print([s["run_id"] for s in r["steps"] if s["step"]=="train"][0])')
"$CAIRN" models register tumours --run "$WEAK_RUN" --path model --description "3 trees"
if "$CAIRN" models alias set tumours production 2 --reason "try the small model"; then
  echo "BUG: the gate let version 2 through"; exit 1
fi

say "Version 1 meets the policy: production -> 1"
"$CAIRN" models alias set tumours production 1 --reason "first model"

say "Deploying tumours@production (dynamic batching) and asking it about two biopsies"
"$CAIRN" deploy tumours@production --max-batch-size 8 --max-queue-delay-us 500
for _ in $(seq 200); do
  curl -sf "$URL/v2/models/tumours/ready" > /dev/null && break
  sleep 0.1
done
curl -s "$URL/v2/models/tumours"; echo
ROWS=$($PY -c '
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1])))[1:3]
print(json.dumps([[float(v) for v in r[:-1]] for r in rows]))' "$DATA/tumours/train/data.csv")
"$CAIRN" predict tumours --input "$ROWS"

say "Notebook-style training: 6 runs of scikit-learn models on a verified checkout, logged through the SDK"
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

say "New data arrives: 169 more training biopsies (the sealed test split unchanged). Only changed chunks are stored"
$PY examples/export_dataset.py --dataset breast_cancer --keep-test-from "$DATA/tumours" --out "$DATA/tumours-v2"
"$CAIRN" data add tumours "$DATA/tumours-v2" -m "169 more training biopsies"
"$CAIRN" data diff tumours main~1 main
"$CAIRN" data log tumours
echo
echo "The previous version, and the runs trained on it (their inputs name this commit):"
"$CAIRN" data show tumours@main~1 | sed -n '1,6p;/runs that used/,$p'

say "The server noticed the commit and re-runs the pipeline: only the steps whose inputs changed run"
TRIGGERED=""
for _ in $(seq 600); do
  TRIGGERED=$("$CAIRN" --json pipelines runs tumours -n 1 | $PY -c '
import json, sys
r = json.load(sys.stdin)[0]
print(r["id"] if r["cause"]["kind"] == "dataset_commit" and r["status"] not in ("PENDING", "RUNNING") else "")')
  [ -n "$TRIGGERED" ] && break
  sleep 0.2
done
[ -n "$TRIGGERED" ] || { echo "no run was triggered by the new commit"; exit 1; }
"$CAIRN" pipelines runs tumours "$TRIGGERED"
echo
"$CAIRN" pipelines runs tumours

say "The retrained model (new data) is version 3: production moves to it while predictions flow"
RETRAIN_RUN=$("$CAIRN" --json pipelines runs tumours "$TRIGGERED" |
              $PY -c 'import json,sys; r=json.load(sys.stdin); print([s["run_id"] for s in r["steps"] if s["step"]=="train"][0])')
"$CAIRN" models register tumours --run "$RETRAIN_RUN" --path model --description "retrained on 569 biopsies"
rm -f "$DATA/stop-traffic"
$PY examples/traffic.py --url "$URL" --model tumours --rows "$DATA/tumours/train/data.csv" \
  --stop-file "$DATA/stop-traffic" > "$DATA/traffic.json" &
TRAFFIC=$!
sleep 2
"$CAIRN" models alias set tumours production 3 --reason "retrained on new data"
for _ in $(seq 300); do
  curl -s "$URL/v2/models/tumours" | grep -q '"versions":\["3"\]' && break
  sleep 0.1
done
sleep 2
touch "$DATA/stop-traffic"
wait $TRAFFIC || { echo "requests failed during the swap:"; cat "$DATA/traffic.json"; exit 1; }
echo "traffic during the swap: $(cat "$DATA/traffic.json")"
"$CAIRN" models alias history tumours production
echo
echo "Prometheus metrics (excerpt):"
curl -s "$URL/metrics" | grep -E '^cairn_inference_requests_total|^cairn_model_loaded' | head -8

say "Garbage collection (dry run: nothing is unreachable yet)"
"$CAIRN" gc --dry-run --grace 5m

say "Stopping the server and checking the data directory (cairn fsck)"
kill -TERM $SERVER
wait $SERVER || true
trap - EXIT
"$CAIRN" --data-dir "$DATA/cairn-data" fsck
echo
echo "Demo data kept in $DATA (remove it with: rm -rf $DATA)"
