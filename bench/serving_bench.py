#!/usr/bin/env python3
"""Model serving benchmarks (issue 5), JSON lines on stdout, progress on stderr.

  serving_overhead    an XGBoost model (100 trees, 30 features) behind Cairn's OIP v2 HTTP endpoint at
                      concurrency 1 and 32, beside the same model called in-process (model_call): the
                      server-side time Cairn reports and the client round trip, minus the in-process call.
                      Target: <= 50 us added server-side p50.
  serving_vs_flask    the same model behind Flask + gunicorn (the usual hand-made alternative), same
                      requests, same load generator, in the same run, right before and right after
                      Cairn at each concurrency (this host's speed drifts). Target: >= 20x their mean
                      throughput at equal or better p99.
  serving_batching    a TorchScript MLP at concurrency 64 (one row per request) with dynamic batching
                      (batches of up to 32 rows), beside libtorch's forward() called in-process with
                      32-row batches (torch_inprocess), measured right before and right after Cairn's
                      run. Target: >= 90% of their mean throughput. Two rows: with the server's default
                      payload log (every prediction logged) and with the log off (--payload-sample 0).
  serving_memory      server RSS before and after loading each model, and its peak during an alias swap.

Usage: bench/serving_bench.py [--seconds 5] [--build build]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
BATCH = int(os.environ.get("CAIRN_BENCH_MLP_BATCH", "32"))  # rows per batch, server and in-process alike


def log(msg):
    print(f"[serving_bench] {msg}", file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


class Api:
    def __init__(self, url):
        self.url = url

    def call(self, method, path, body=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                text = r.read()
                return json.loads(text) if text else {}
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: HTTP {e.code}: {e.read()[:300]!r}")


def make_models(out):
    code = r'''
import json, os, sys
import numpy as np
out = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.normal(size=(5000, 30)).astype(np.float32)
y = (X[:, :5].sum(axis=1) + 0.3 * rng.normal(size=5000) > 0).astype(int)
import xgboost as xgb
for name, seed in (("xgb_v1", 1), ("xgb_v2", 2)):
    d = os.path.join(out, name); os.makedirs(d)
    m = xgb.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.1, n_jobs=1, random_state=seed,
                          subsample=0.9)
    m.fit(X, y)
    m.get_booster().save_model(os.path.join(d, "model.json"))
    json.dump({"flavor": "xgboost", "file": "model.json",
               "signature": {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}],
                             "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1]}]}},
              open(os.path.join(d, "cairn-model.yaml"), "w"))
import torch
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                          torch.nn.ReLU(), torch.nn.Linear(1024, 10))
d = os.path.join(out, "mlp"); os.makedirs(d)
torch.jit.save(torch.jit.script(mlp.eval()), os.path.join(d, "model.pt"))
json.dump({"flavor": "torchscript", "file": "model.pt",
           "signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 256]}],
                         "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]}},
          open(os.path.join(d, "cairn-model.yaml"), "w"))
'''
    subprocess.run([PY, "-c", code, out], check=True)


def register(api, name, folder, alias, config=None, deploy=True):
    run = api.call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "0", "run_name": f"train-{name}"})["run"]
    run_id = run["info"]["run_id"]
    base = run["info"]["artifact_uri"].replace("mlflow-artifacts:", "")
    for f in sorted(os.listdir(folder)):
        with open(os.path.join(folder, f), "rb") as fh:
            api.call("PUT", f"/api/2.0/mlflow-artifacts/artifacts{base}/model/{f}", raw=fh.read(),
                     ctype="application/octet-stream")
    try:
        api.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})
    except RuntimeError as e:
        if "ALREADY_EXISTS" not in str(e):
            raise
    v = api.call("POST", "/api/2.0/mlflow/model-versions/create",
                 {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})["model_version"]["version"]
    api.call("POST", "/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": alias, "version": v})
    if deploy:
        api.call("PUT", f"/api/cairn/v1/deployments/{name}", {"model": name, "alias": alias, "config": config or {}})
    return v


def wait_ready(url, name, version=None, timeout=60):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/ready"
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} not ready after {timeout}s")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_json(args, env=None):
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def request_body(rows, cols, name, path):
    data = [[((r * cols + c) % 7) * 0.5 for c in range(cols)] for r in range(rows)]
    with open(path, "w") as f:
        json.dump({"inputs": [{"name": name, "datatype": "FP32", "shape": [rows, cols], "data": data}]}, f)
    return path


def binary_request_body(rows, cols, name, path):
    """The same request with Triton's binary tensor extension: returns the JSON header's length."""
    import struct
    header = json.dumps({"inputs": [{"name": name, "datatype": "FP32", "shape": [rows, cols],
                                     "parameters": {"binary_data_size": rows * cols * 4}}]}).encode()
    data = struct.pack(f"<{rows * cols}f", *[((i % 7) * 0.5) for i in range(rows * cols)])
    with open(path, "wb") as f:
        f.write(header + data)
    return len(header)


def start_server(cairn, data_dir, extra=()):
    """A `cairn server` on a free port: (process, url)."""
    server = subprocess.Popen([cairn, "server", "--port", "0", "--data-dir", data_dir, *extra],
                              stdout=subprocess.PIPE, stderr=open(data_dir + ".log", "w"), text=True)
    line = server.stdout.readline()
    return server, re.search(r"(http://\S+)", line).group(1)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    cairn = os.path.join(args.build, "src/main/cairn")
    load = os.path.join(args.build, "bench/oip_load")
    call = os.path.join(args.build, "bench/model_call")
    tmp = tempfile.mkdtemp(prefix="cairn-serving-bench-")
    server = gunicorn = quiet = None
    try:
        log("making models (XGBoost 100 trees x 30 features, two versions; TorchScript MLP 256-1024-1024-10)")
        make_models(os.path.join(tmp, "models"))
        models = os.path.join(tmp, "models")
        xgb_body = request_body(1, 30, "features", os.path.join(tmp, "xgb.json"))
        mlp_body = os.path.join(tmp, "mlp.bin")
        mlp_json_length = binary_request_body(1, 256, "x", mlp_body)

        log("starting cairn server")
        server, url = start_server(cairn, os.path.join(tmp, "data"))
        api = Api(url)
        rss_empty = rss_kb(server.pid)

        # Dynamic batching without a queue delay: an idle instance answers on the HTTP event loop that
        # read the request; under load, requests that queue behind running calls share the next one.
        # Two instances, one per core, as gunicorn gets two worker processes.
        register(api, "xgb", os.path.join(models, "xgb_v1"), "production",
                 config={"max_batch_size": 32, "max_queue_delay_us": 0, "instances": 2})
        wait_ready(url, "xgb")
        rss_xgb = rss_kb(server.pid)

        log("in-process XGBoost call (the baseline)")
        base = run_json([call, "--model-dir", os.path.join(models, "xgb_v1"), "--batch", "1", "--seconds",
                         str(min(args.seconds, 3)), "--label", "xgb_in_process"])
        emit(base)
        log("Flask + gunicorn with the same model (the usual hand-made alternative)")
        port = free_port()
        env = dict(os.environ, MODEL_FILE=os.path.join(models, "xgb_v1", "model.json"))
        gunicorn = subprocess.Popen(
            [PY, "-m", "gunicorn", "-w", str(os.cpu_count() or 2), "-k", "gthread", "--threads", "8",
             "-b", f"127.0.0.1:{port}", "--chdir", os.path.join(ROOT, "bench/serving"), "flask_oip:app"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "gunicorn.log"), "w"))
        flask_url = f"http://127.0.0.1:{port}"
        end = time.time() + 30
        while time.time() < end:
            try:
                urllib.request.urlopen(flask_url + "/v2/health/ready", timeout=2)
                break
            except Exception:
                time.sleep(0.1)

        def drive(target, c, label):
            return run_json([load, "--url", target, "--model", "xgb", "--body", xgb_body, "--concurrency", str(c),
                             "--seconds", str(args.seconds), "--label", label])

        # This host's speed drifts within minutes: Flask runs right before and right after Cairn at each
        # concurrency, and Cairn is compared with the mean of the two (and the lower of their p99s).
        for c in (1, 32):
            log(f"concurrency {c}: Flask, Cairn, Flask")
            f1 = drive(flask_url, c, f"flask_xgb_c{c}_before")
            r = drive(url, c, f"cairn_xgb_c{c}")
            f2 = drive(flask_url, c, f"flask_xgb_c{c}_after")
            emit({"bench": "serving_overhead", "concurrency": c, "in_process_p50_us": base["p50_us"],
                  "server_p50_us": r.get("server_p50_us"), "client_p50_us": r["client_p50_us"],
                  "client_p99_us": r["client_p99_us"],
                  "added_server_side_p50_us": round(r.get("server_p50_us", 0) - base["p50_us"], 1),
                  "added_round_trip_p50_us": round(r["client_p50_us"] - base["p50_us"], 1),
                  "throughput_rps": round(r["throughput_rps"]), "failed": r["failed"], "target_added_us": 50})
            flask_rps = (f1["throughput_rps"] + f2["throughput_rps"]) / 2
            emit({"bench": "serving_vs_flask", "concurrency": c,
                  "cairn_rps": round(r["throughput_rps"]), "flask_gunicorn_rps": round(flask_rps),
                  "flask_before_after_rps": [round(f1["throughput_rps"]), round(f2["throughput_rps"])],
                  "speedup": round(r["throughput_rps"] / max(flask_rps, 1e-9), 1),
                  "cairn_p99_us": r["client_p99_us"],
                  "flask_gunicorn_p99_us": min(f1["client_p99_us"], f2["client_p99_us"]),
                  "cairn_failed": r["failed"], "flask_failed": f1["failed"] + f2["failed"], "target_speedup": 20})
        gunicorn.terminate()
        gunicorn.wait()
        gunicorn = None

        log(f"TorchScript MLP: dynamic batching vs libtorch in-process with {BATCH}-row batches")
        mlp_config = {"max_batch_size": BATCH, "max_queue_delay_us": 10000, "instances": 2}
        register(api, "mlp", os.path.join(models, "mlp"), "production", config=mlp_config)
        wait_ready(url, "mlp")
        rss_mlp = rss_kb(server.pid)
        # model_call finds the TorchScript plugin where the server does: beside the cairn binary.
        torch_env = dict(os.environ, CAIRN_TORCH_BACKEND=os.path.join(os.path.dirname(cairn), "libcairn_torch.so"))
        via_backend = run_json([call, "--model-dir", os.path.join(models, "mlp"), "--batch", str(BATCH), "--seconds",
                                str(min(args.seconds, 3)), "--label", f"mlp_backend_in_process_b{BATCH}"], env=torch_env)
        emit(via_backend)
        # The ceiling: libtorch's forward() called directly, no Cairn code at all. This host's speed
        # drifts by up to 1.7x within minutes, so it is measured right before and right after Cairn's
        # run, and Cairn is compared with the mean of the two.
        def libtorch(label):
            return run_json([os.path.join(args.build, "bench/torch_inprocess"), "--model",
                             os.path.join(models, "mlp", "model.pt"), "--batch", str(BATCH), "--seconds",
                             str(min(args.seconds, 3)), "--label", label])

        # Twice: with the server's default payload log (every prediction's 256 inputs written as JSON,
        # work that competes with the model for the same two cores), and on a second server started
        # with --payload-sample 0, which measures the batching alone. libtorch runs before, between
        # and after, and each Cairn run is compared with the mean of the two runs around it.
        log("second cairn server, payload log off (--payload-sample 0)")
        quiet, quiet_url = start_server(cairn, os.path.join(tmp, "data-no-log"), ["--payload-sample", "0"])
        register(Api(quiet_url), "mlp", os.path.join(models, "mlp"), "production", config=mlp_config)
        wait_ready(quiet_url, "mlp")
        runs = [libtorch(f"mlp_libtorch_b{BATCH}_before")]
        emit(runs[0])
        for target, payload_log, label in ((url, "every prediction", "cairn_mlp_c64"),
                                           (quiet_url, "off", "cairn_mlp_c64_no_payload_log")):
            r = run_json([load, "--url", target, "--model", "mlp", "--body", mlp_body, "--json-length",
                          str(mlp_json_length), "--concurrency", "64", "--seconds", str(args.seconds),
                          "--label", label])
            runs.append(libtorch(f"mlp_libtorch_b{BATCH}_after_{label}"))
            emit(runs[-1])
            around = [runs[-2]["rows_per_s"], runs[-1]["rows_per_s"]]
            in_process = sum(around) / 2
            emit({"bench": "serving_batching", "concurrency": 64, "payload_log": payload_log,
                  "in_process_rows_per_s": round(in_process), "in_process_before_after": [round(x) for x in around],
                  "cairn_rows_per_s": round(r["throughput_rps"]),
                  "fraction_of_in_process": round(r["throughput_rps"] / max(in_process, 1e-9), 3),
                  "client_p50_us": r["client_p50_us"], "client_p99_us": r["client_p99_us"], "failed": r["failed"],
                  "target_fraction": 0.9})
        quiet.terminate()
        quiet.wait()
        quiet = None

        log("alias swap under load: xgb production v1 -> v2 while 8 clients send requests")
        v2 = register(api, "xgb", os.path.join(models, "xgb_v2"), "candidate", deploy=False)
        peak = [rss_kb(server.pid)]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(server.pid))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        loader = subprocess.Popen([load, "--url", url, "--model", "xgb", "--body", xgb_body, "--concurrency", "8",
                                   "--seconds", "4", "--warmup", "0.5", "--label", "xgb_during_swap"],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        api.call("POST", "/api/2.0/mlflow/registered-models/alias", {"name": "xgb", "alias": "production",
                                                                      "version": v2})
        swap = json.loads(loader.communicate()[0].strip().splitlines()[-1])
        stop.set()
        sampler.join()
        emit({"bench": "serving_memory", "rss_empty_mb": round(rss_empty / 1024, 1),
              "rss_with_xgb_mb": round(rss_xgb / 1024, 1), "xgb_model_mb": round((rss_xgb - rss_empty) / 1024, 1),
              "rss_with_xgb_and_mlp_mb": round(rss_mlp / 1024, 1),
              "mlp_model_mb": round((rss_mlp - rss_xgb) / 1024, 1),
              "rss_peak_during_swap_mb": round(peak[0] / 1024, 1),
              "swap_requests": swap["requests"], "swap_failed": swap["failed"], "swap_versions": swap["versions"]})
    finally:
        if gunicorn:
            gunicorn.terminate()
        for p in (server, quiet):
            if p:
                p.terminate()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
