"""Sends predictions to a deployment until told to stop, then says how they went.

Used by the demo to show an alias move under load: every request must succeed,
and the answers come first from the old version, then from the new one.

    python3 examples/traffic.py --url URL --model tumours --rows data.csv --stop-file F
"""
import argparse
import collections
import csv
import json
import os
import sys
import time
import urllib.error
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("--url", required=True)
p.add_argument("--model", required=True)
p.add_argument("--rows", required=True, help="CSV with a header; the last column (the label) is dropped")
p.add_argument("--stop-file", required=True)
p.add_argument("--max-seconds", type=float, default=300)
args = p.parse_args()

with open(args.rows) as f:
    rows = [[float(v) for v in r[:-1]] for r in list(csv.reader(f))[1:]]
versions, failures = collections.Counter(), collections.Counter()
sent, start, i = 0, time.time(), 0
while not os.path.exists(args.stop_file) and time.time() - start < args.max_seconds:
    row = rows[i % len(rows)]
    i += 1
    body = json.dumps({"id": f"demo-{i}", "inputs": [
        {"name": "biopsy", "datatype": "FP32", "shape": [1, len(row)], "data": row}]}).encode()
    req = urllib.request.Request(f"{args.url}/v2/models/{args.model}/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    sent += 1
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            versions[json.loads(r.read())["model_version"]] += 1
    except urllib.error.HTTPError as e:
        failures[f"HTTP {e.code}: {e.read()[:120]!r}"] += 1
    except Exception as e:  # connection problems count as failures too
        failures[str(e)[:120]] += 1
elapsed = time.time() - start
print(json.dumps({"requests": sent, "failed": sum(failures.values()), "seconds": round(elapsed, 1),
                  "answered_by_version": dict(versions), "failures": dict(failures)}))
sys.exit(1 if failures else 0)
