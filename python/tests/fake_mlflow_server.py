"""A tiny in-memory stand-in for an MLflow tracking server, for SDK unit tests.

Implements just the endpoints the SDK uses, with MLflow's paths and JSON
shapes, plus fault injection. It is NOT a reference implementation: the real
server's behaviour is tested against `cairn server` in the other test files.

Thread-safe (one lock). Usage:
    srv = FakeMlflowServer(); srv.start()
    srv.inject("/runs/log-batch", 503, times=2)   # next two log-batch calls fail
    ... srv.url ... srv.requests ...
    srv.stop()
"""

import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/api/2.0"


class FakeMlflowServer:
    def __init__(self, search_page_size=None):
        self.lock = threading.Lock()
        self.experiments = {}  # id -> dict
        self.runs = {}  # run_id -> {"info", "params", "tags", "metrics": [..]}
        self.artifacts = {}  # "exp/run/artifacts/rel" -> bytes
        self.requests = []  # (method, path, parsed JSON body or None, headers dict)
        self.faults = []  # [substring, status, body, remaining, headers]
        self.hooks = {}  # path -> callable(handler, body) returning (status, dict) or None
        self.search_page_size = search_page_size
        # Close every connection after its response without saying so (as a
        # server whose keep-alive idle timeout expired would).
        self.drop_connections = False
        self._httpd = None
        self._thread = None
        self.url = None

    # --- control ------------------------------------------------------------

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

            def do_PUT(self):
                server._handle(self, "PUT")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def inject(self, path_substring, status, times=1, error_code=None, headers=None):
        body = {"error_code": error_code or "TEMPORARILY_UNAVAILABLE", "message": "injected"}
        with self.lock:
            self.faults.append([path_substring, status, body, times, headers or {}])

    def calls(self, path_substring, method=None):
        with self.lock:
            return [r for r in self.requests
                    if path_substring in r[1] and (method is None or r[0] == method)]

    # --- request handling ---------------------------------------------------------

    def _send(self, h, status, payload=None, raw=None, headers=None):
        data = raw if raw is not None else json.dumps(payload or {}).encode()
        h.send_response(status)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Content-Type", "application/octet-stream" if raw is not None
                      else "application/json")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        if self.drop_connections:
            h.close_connection = True

    def _err(self, h, status, code, msg):
        self._send(h, status, {"error_code": code, "message": msg})

    def _handle(self, h, method):
        split = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(split.path)
        query = urllib.parse.parse_qs(split.query)
        length = int(h.headers.get("Content-Length") or 0)
        if h.headers.get("Transfer-Encoding"):
            self._err(h, 411, "BAD_REQUEST", "chunked bodies not supported")
            return
        raw = h.rfile.read(length) if length else b""
        body = None
        if method == "POST":
            body = json.loads(raw or b"{}")
        with self.lock:
            self.requests.append((method, path, body if method != "PUT" else len(raw),
                                  dict(h.headers)))
            for f in self.faults:
                if f[0] in path and f[3] > 0:
                    f[3] -= 1
                    status, payload, headers = f[1], f[2], f[4]
                    break
            else:
                status = None
        if status is not None:
            self._send(h, status, payload, headers=headers)
            return
        hook = self.hooks.get(path)
        if hook is not None:
            res = hook(method, query, body)
            if res is not None:
                self._send(h, res[0], res[1])
                return
        if path.startswith(PREFIX + "/mlflow-artifacts/artifacts"):
            self._artifacts(h, method, path[len(PREFIX + "/mlflow-artifacts/artifacts"):], query, raw)
            return
        fn = getattr(self, "_" + method + path[len(PREFIX):].replace("/", "_").replace("-", "_"), None)
        if fn is None:
            self._err(h, 404, "ENDPOINT_NOT_FOUND", f"no {method} {path}")
            return
        with self.lock:
            res = fn(query if method == "GET" else body)
        self._send(h, *res) if isinstance(res, tuple) else self._send(h, 200, res)

    # --- endpoints (called with the lock held) ---------------------------------------

    def _GET_mlflow_experiments_get_by_name(self, q):
        name = q.get("experiment_name", [""])[0]
        for e in self.experiments.values():
            if e["name"] == name:
                return {"experiment": e}
        return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"no experiment {name}"}

    def _POST_mlflow_experiments_create(self, b):
        if any(e["name"] == b["name"] for e in self.experiments.values()):
            return 400, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"}
        eid = str(len(self.experiments) + 1)
        self.experiments[eid] = {"experiment_id": eid, "name": b["name"], "lifecycle_stage": "active"}
        return {"experiment_id": eid}

    def _run_json(self, r):
        latest = {}
        for m in r["metrics"]:
            cur = latest.get(m["key"])
            if cur is None or (m["step"], m["timestamp"]) >= (cur["step"], cur["timestamp"]):
                latest[m["key"]] = m
        return {
            "info": r["info"],
            "data": {
                "metrics": list(latest.values()),
                "params": [{"key": k, "value": v} for k, v in r["params"].items()],
                "tags": [{"key": k, "value": v} for k, v in r["tags"].items()],
            },
        }

    def _POST_mlflow_runs_create(self, b):
        rid = uuid.uuid4().hex
        eid = b["experiment_id"]
        info = {
            "run_id": rid, "run_uuid": rid, "experiment_id": eid,
            "run_name": b.get("run_name", "fake-run"), "user_id": b.get("user_id", ""),
            "status": "RUNNING", "start_time": b.get("start_time", 0),
            "artifact_uri": f"mlflow-artifacts:/{eid}/{rid}/artifacts", "lifecycle_stage": "active",
        }
        tags = {t["key"]: t["value"] for t in b.get("tags", [])}
        self.runs[rid] = {"info": info, "params": {}, "tags": tags, "metrics": []}
        return {"run": self._run_json(self.runs[rid])}

    def _POST_mlflow_runs_update(self, b):
        r = self.runs.get(b.get("run_id"))
        if r is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}
        for k in ("status", "end_time", "run_name"):
            if k in b:
                r["info"][k] = b[k]
        return {"run_info": r["info"]}

    def _GET_mlflow_runs_get(self, q):
        r = self.runs.get(q.get("run_id", [""])[0])
        if r is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}
        return {"run": self._run_json(r)}

    def _POST_mlflow_runs_log_batch(self, b):
        r = self.runs.get(b.get("run_id"))
        if r is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}
        if len(b.get("metrics", [])) > 1000 or len(b.get("params", [])) > 100:
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "too many"}
        for p in b.get("params", []):
            if p["key"] in r["params"] and r["params"][p["key"]] != p["value"]:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "param changed"}
            r["params"][p["key"]] = p["value"]
        for t in b.get("tags", []):
            r["tags"][t["key"]] = t["value"]
        r["metrics"].extend(b.get("metrics", []))
        return {}

    def _POST_mlflow_runs_set_tag(self, b):
        r = self.runs.get(b.get("run_id"))
        if r is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}
        r["tags"][b["key"]] = b["value"]
        return {}

    def _GET_mlflow_metrics_get_history(self, q):
        r = self.runs.get(q.get("run_id", [""])[0])
        if r is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}
        key = q.get("metric_key", [""])[0]
        return {"metrics": [m for m in r["metrics"] if m["key"] == key]}

    def _POST_mlflow_runs_search(self, b):
        runs = [r for r in self.runs.values() if r["info"]["experiment_id"] in b["experiment_ids"]]
        runs.sort(key=lambda r: r["info"]["start_time"])
        start = int(b.get("page_token") or 0)
        size = min(b.get("max_results", 1000), self.search_page_size or 1000)
        page = runs[start : start + size]
        out = {"runs": [self._run_json(r) for r in page]}
        if start + size < len(runs):
            out["next_page_token"] = str(start + size)
        return out

    def _artifacts(self, h, method, rest, query, raw):
        if method == "PUT":
            with self.lock:
                self.artifacts[rest.strip("/")] = raw
            self._send(h, 200, {})
        elif method == "GET" and rest.strip("/"):
            with self.lock:
                data = self.artifacts.get(rest.strip("/"))
            if data is None:
                self._err(h, 404, "RESOURCE_DOES_NOT_EXIST", "no artifact")
            else:
                self._send(h, 200, raw=data)
        else:
            base = query.get("path", [""])[0].strip("/")
            entries = {}
            with self.lock:
                for p, data in self.artifacts.items():
                    if p.startswith(base + "/"):
                        rel = p[len(base) + 1 :]
                        head = rel.split("/", 1)[0]
                        if "/" in rel:
                            entries[head] = {"path": head, "is_dir": True}
                        else:
                            entries[head] = {"path": head, "is_dir": False, "file_size": len(data)}
            self._send(h, 200, {"files": list(entries.values())} if entries else {})
