"""`Client`: the Cairn/MLflow REST API (2.0) and the mlflow-artifacts proxy, one call per method.

Thread-safe (one keep-alive connection per thread). Most users call the
module-level functions in `cairn` (which use a default Client built from the
tracking URI) and `cairn.start_run`; a Client is for talking to several
servers at once, or for explicit control.

Runs are returned as plain dicts:
    {"info": {"run_id", "experiment_id", "run_name", "status", "start_time",
              "end_time", "artifact_uri", "lifecycle_stage", "user_id", ...},
     "data": {"metrics": {key: latest value}, "params": {key: value},
              "tags": {key: value}},
     "inputs": {...}}   # as the server sent it (dataset_inputs), may be {}

Usage:
    c = Client("http://127.0.0.1:5000")
    exp_id = c.get_or_create_experiment("demo")
    runs = c.search_runs(experiment_ids=[exp_id], order_by=["metrics.acc DESC"])
"""

import getpass
import json
import mimetypes
import os
import posixpath
import time
import urllib.parse

from ._http import API_PREFIX, Transport
from .errors import CairnError

ARTIFACTS_ENDPOINT = API_PREFIX + "/mlflow-artifacts/artifacts"
CAIRN_API_PREFIX = "/api/cairn/v1"
_SEARCH_PAGE = 1000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100


def now_ms():
    return int(time.time() * 1000)


def current_user():
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getuser raises various errors without a user db
        return "unknown"


def _to_int(v):
    # proto int64 fields may be JSON numbers or strings
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def _to_float(v):
    if isinstance(v, str):
        try:
            return float(v)  # "NaN", "Infinity", "-Infinity"
        except ValueError:
            return v
    return v


def normalize_run(raw):
    """Turns a proto-JSON Run into the SDK's run dict (see the module docstring)."""
    info = dict(raw.get("info", {}))
    for k in ("start_time", "end_time"):
        if k in info:
            info[k] = _to_int(info[k])
    if "run_id" not in info and "run_uuid" in info:
        info["run_id"] = info["run_uuid"]
    data = raw.get("data", {}) or {}
    return {
        "info": info,
        "data": {
            "metrics": {m["key"]: _to_float(m.get("value")) for m in data.get("metrics", [])},
            "params": {p["key"]: p.get("value", "") for p in data.get("params", [])},
            "tags": {t["key"]: t.get("value", "") for t in data.get("tags", [])},
        },
        "inputs": raw.get("inputs", {}) or {},
    }


def normalize_metric(m):
    return {
        "key": m.get("key"),
        "value": _to_float(m.get("value")),
        "timestamp": _to_int(m.get("timestamp", 0)),
        "step": _to_int(m.get("step", 0)),
    }


def _kv(d):
    return [{"key": str(k), "value": str(v)} for k, v in (d or {}).items()]


def _chunks(items, n):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def artifact_proxy_root(artifact_uri):
    """'mlflow-artifacts:/1/abc/artifacts' -> '1/abc/artifacts' (the proxy's path)."""
    if artifact_uri.startswith("mlflow-artifacts:"):
        parsed = urllib.parse.urlsplit(artifact_uri)
        return parsed.path.strip("/")
    marker = "/mlflow-artifacts/artifacts"
    if artifact_uri.startswith(("http://", "https://")) and marker in artifact_uri:
        return urllib.parse.urlsplit(artifact_uri).path.split(marker, 1)[1].strip("/")
    raise CairnError(
        f"artifact_uri {artifact_uri!r} is not served by the artifact proxy "
        "(expected mlflow-artifacts:/...)",
        "INVALID_PARAMETER_VALUE",
    )


def _check_rel_path(path, what):
    if path is None:
        return None
    p = path.replace(os.sep, "/").strip("/")
    if p == "":
        return None
    parts = p.split("/")
    if any(x in ("", ".", "..") for x in parts) or posixpath.isabs(path.replace(os.sep, "/")):
        raise CairnError(f"invalid {what} {path!r}: must be a relative path without '.' or '..'",
                         "INVALID_PARAMETER_VALUE")
    return p


def _quote(path):
    return urllib.parse.quote(path, safe="/")


class Client:
    """See the module docstring."""

    def __init__(self, tracking_uri, **transport_options):
        self.tracking_uri = tracking_uri.rstrip("/")
        self._t = Transport(self.tracking_uri, **transport_options)
        self._artifact_roots = {}  # run_id -> proxy root; artifact_uri never changes

    def close(self):
        self._t.close()

    def call(self, method, endpoint, json_body=None, query=None):
        """Raw escape hatch: an MLflow REST call, endpoint relative to /api/2.0."""
        return self._t.call(method, endpoint, json_body=json_body, query=query)

    # --- experiments --------------------------------------------------------

    def get_experiment_by_name(self, name):
        """The experiment dict, or None if no experiment has that name."""
        try:
            r = self.call("GET", "/mlflow/experiments/get-by-name", query={"experiment_name": name})
        except CairnError as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return r.get("experiment")

    def get_experiment(self, experiment_id):
        r = self.call("GET", "/mlflow/experiments/get", query={"experiment_id": str(experiment_id)})
        return r.get("experiment")

    def create_experiment(self, name, tags=None, artifact_location=None):
        body = {"name": name}
        if artifact_location:
            body["artifact_location"] = artifact_location
        if tags:
            body["tags"] = _kv(tags)
        return str(self.call("POST", "/mlflow/experiments/create", body)["experiment_id"])

    def get_or_create_experiment(self, name):
        """Experiment id for `name`, creating it if needed (safe against concurrent creators)."""
        for _ in range(3):
            exp = self.get_experiment_by_name(name)
            if exp is not None:
                if exp.get("lifecycle_stage", "active") != "active":
                    raise CairnError(
                        f"experiment {name!r} (id {exp.get('experiment_id')}) is deleted; "
                        "restore it or choose another name",
                        "INVALID_STATE",
                    )
                return str(exp["experiment_id"])
            try:
                return self.create_experiment(name)
            except CairnError as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                # Someone else created it between our get and create: look it up again.
        raise CairnError(f"could not get or create experiment {name!r}", "INTERNAL_ERROR")

    # --- runs ---------------------------------------------------------------

    def create_run(self, experiment_id, run_name=None, tags=None, start_time=None, user_id=None):
        """Creates a RUNNING run; returns the SDK run dict."""
        body = {
            "experiment_id": str(experiment_id),
            "user_id": user_id if user_id is not None else current_user(),
            "start_time": start_time if start_time is not None else now_ms(),
            "tags": _kv(tags),
        }
        if run_name:
            body["run_name"] = run_name
        return normalize_run(self.call("POST", "/mlflow/runs/create", body)["run"])

    def update_run(self, run_id, status=None, end_time=None, run_name=None):
        """Updates status / end_time / run_name; returns the new run info dict."""
        body = {"run_id": run_id, "run_uuid": run_id}
        if status is not None:
            body["status"] = status
        if end_time is not None:
            body["end_time"] = end_time
        if run_name is not None:
            body["run_name"] = run_name
        info = dict(self.call("POST", "/mlflow/runs/update", body).get("run_info", {}))
        for k in ("start_time", "end_time"):
            if k in info:
                info[k] = _to_int(info[k])
        return info

    def get_run(self, run_id):
        r = self.call("GET", "/mlflow/runs/get", query={"run_id": run_id, "run_uuid": run_id})
        return normalize_run(r["run"])

    def delete_run(self, run_id):
        self.call("POST", "/mlflow/runs/delete", {"run_id": run_id})

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        """Sends lists of {"key","value",...} dicts, split to respect the server's per-request limits."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        for chunk in _chunks(params, MAX_PARAMS_PER_BATCH):
            self.call("POST", "/mlflow/runs/log-batch", {"run_id": run_id, "params": chunk})
        for chunk in _chunks(tags, MAX_TAGS_PER_BATCH):
            self.call("POST", "/mlflow/runs/log-batch", {"run_id": run_id, "tags": chunk})
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            self.call("POST", "/mlflow/runs/log-batch", {"run_id": run_id, "metrics": chunk})

    # --- datasets (Cairn's native API) ----------------------------------------

    def get_dataset_commit(self, dataset, ref="main"):
        """The commit of `dataset` at `ref` (a branch, tag or commit id): a dict
        with "id", "manifest", "file_count", "total_bytes", "splits", ..."""
        r = self._t.call("GET", f"/datasets/{_quote(dataset)}/commits/{_quote(ref)}", prefix=CAIRN_API_PREFIX)
        return r["commit"]

    def log_dataset_input(self, run_id, dataset, ref="main", context="training", split=None):
        """Records that run `run_id` read `dataset` at `ref` (MLflow log-inputs,
        with the commit id as the dataset digest), so `cairn data show COMMIT`
        lists the run. `split` names the split it read, if any; the input is then
        named "DATASET#SPLIT", so a run that trains on one split and evaluates on
        another records both. Returns the commit."""
        commit = self.get_dataset_commit(dataset, ref)
        source = f"cairn:{dataset}@{commit['id']}" + (f"#{split}" if split else "")
        tags = [{"key": "mlflow.data.context", "value": str(context)}]
        if split:
            tags.append({"key": "cairn.data.split", "value": str(split)})
        self.call("POST", "/mlflow/runs/log-inputs", {
            "run_id": run_id,
            "datasets": [{
                "tags": tags,
                "dataset": {
                    "name": f"{dataset}#{split}" if split else dataset,
                    "digest": commit["id"],
                    "source_type": "cairn",
                    "source": source,
                    "profile": json.dumps({"num_files": commit.get("file_count"),
                                           "num_bytes": commit.get("total_bytes")}),
                },
            }],
        })
        return commit

    def set_tag(self, run_id, key, value):
        self.call("POST", "/mlflow/runs/set-tag",
                  {"run_id": run_id, "run_uuid": run_id, "key": str(key), "value": str(value)})

    def delete_tag(self, run_id, key):
        self.call("POST", "/mlflow/runs/delete-tag", {"run_id": run_id, "key": str(key)})

    def get_metric_history(self, run_id, key):
        """All logged values of metric `key`: [{"key","value","timestamp","step"}], server order."""
        out = []
        token = None
        while True:
            q = {"run_id": run_id, "run_uuid": run_id, "metric_key": key}
            if token:
                q["page_token"] = token
            r = self.call("GET", "/mlflow/metrics/get-history", query=q)
            out.extend(normalize_metric(m) for m in r.get("metrics", []))
            token = r.get("next_page_token")
            if not token:
                return out

    def search_runs(self, experiment_ids=None, experiment_names=None, filter_string="",
                    order_by=None, max_results=None, run_view_type="ACTIVE_ONLY"):
        """Runs matching `filter_string` (MLflow search syntax), following page tokens.

        `max_results` caps the total returned (None: all). Unknown experiment
        names are skipped, as mlflow.search_runs does.
        """
        ids = [str(i) for i in (experiment_ids or [])]
        for name in experiment_names or []:
            exp = self.get_experiment_by_name(name)
            if exp is not None:
                ids.append(str(exp["experiment_id"]))
        if not ids:
            return []
        runs = []
        token = None
        while max_results is None or len(runs) < max_results:
            page = _SEARCH_PAGE if max_results is None else min(_SEARCH_PAGE, max_results - len(runs))
            body = {
                "experiment_ids": ids,
                "filter": filter_string or "",
                "run_view_type": run_view_type,
                "max_results": page,
                "order_by": list(order_by or []),
            }
            if token:
                body["page_token"] = token
            r = self.call("POST", "/mlflow/runs/search", body)
            runs.extend(normalize_run(x) for x in r.get("runs", []))
            token = r.get("next_page_token")
            if not token:
                break
        return runs if max_results is None else runs[:max_results]

    # --- artifacts (through the mlflow-artifacts proxy) ----------------------

    def _artifact_root(self, run_id, artifact_uri=None):
        root = self._artifact_roots.get(run_id)
        if root is None:
            if artifact_uri is None:
                artifact_uri = self.get_run(run_id)["info"]["artifact_uri"]
            root = artifact_proxy_root(artifact_uri)
            self._artifact_roots[run_id] = root
        return root

    def remember_artifact_uri(self, run_id, artifact_uri):
        self._artifact_root(run_id, artifact_uri)

    def _artifact_url(self, run_id, rel):
        return f"{ARTIFACTS_ENDPOINT}/{_quote(self._artifact_root(run_id))}/{_quote(rel)}"

    def log_artifact(self, run_id, local_path, artifact_path=None):
        """Uploads one local file (streamed) to <artifact_path>/<basename>."""
        if not os.path.isfile(local_path):
            raise FileNotFoundError(f"not a file: {local_path}")
        dest = _check_rel_path(artifact_path, "artifact_path")
        name = os.path.basename(local_path)
        rel = f"{dest}/{name}" if dest else name
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._t.upload(self._artifact_url(run_id, rel), local_path, content_type=content_type)

    def log_artifacts(self, run_id, local_dir, artifact_path=None):
        """Uploads every file under `local_dir`, keeping the tree, under `artifact_path`."""
        if not os.path.isdir(local_dir):
            raise NotADirectoryError(f"not a directory: {local_dir}")
        dest = _check_rel_path(artifact_path, "artifact_path")
        local_dir = os.path.abspath(local_dir)
        for root, dirs, files in os.walk(local_dir):
            dirs.sort()
            rel_dir = os.path.relpath(root, local_dir)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            sub = "/".join(x for x in (dest, rel_dir) if x)
            for name in sorted(files):
                self.log_artifact(run_id, os.path.join(root, name), sub or None)

    def log_bytes(self, run_id, data, artifact_file, content_type="application/octet-stream"):
        rel = _check_rel_path(artifact_file, "artifact_file")
        if rel is None:
            raise CairnError("artifact_file must name a file", "INVALID_PARAMETER_VALUE")
        self._t.upload(self._artifact_url(run_id, rel), data, content_type=content_type)

    def list_artifacts(self, run_id, path=None):
        """Direct children of `path` (None: the artifact root): [{"path","is_dir","file_size"}].

        Paths are relative to the run's artifact root, like MLflow's list_artifacts.
        """
        rel = _check_rel_path(path, "path")
        root = self._artifact_root(run_id)
        full = f"{root}/{rel}" if rel else root
        r = self.call("GET", "/mlflow-artifacts/artifacts", query={"path": full})
        out = []
        for f in r.get("files", []):
            name = f["path"]
            entry = {
                "path": f"{rel}/{name}" if rel else name,
                "is_dir": bool(f.get("is_dir", False)),
            }
            if "file_size" in f:
                entry["file_size"] = _to_int(f["file_size"])
            out.append(entry)
        return sorted(out, key=lambda e: e["path"])

    def download_artifact(self, run_id, path, dst):
        """Downloads file or directory `path` into local directory `dst`; returns the local path."""
        rel = _check_rel_path(path, "path")
        os.makedirs(dst, exist_ok=True)
        if rel is None:
            entries = self.list_artifacts(run_id)
            for e in entries:
                self.download_artifact(run_id, e["path"], dst)
            return os.path.abspath(dst)
        local = os.path.join(dst, *rel.split("/")[-1:])
        try:
            children = self.list_artifacts(run_id, rel)
        except CairnError:
            children = []  # some servers refuse to list a file path; treat it as a file
        if children:
            os.makedirs(local, exist_ok=True)
            for e in children:
                self.download_artifact(run_id, e["path"], local)
            return os.path.abspath(local)
        self._t.download(self._artifact_url(run_id, rel), local)
        return os.path.abspath(local)
