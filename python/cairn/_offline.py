"""Offline mode: inside a pipeline step the SDK writes records to a file.

A pipeline step runs in a sandbox without network. The executor sets
CAIRN_RECORD_FILE (an absolute path in a folder the step may write, e.g.
/cairn/out/_cairn/records.jsonl) and CAIRN_RUN_ID (the step's MLflow run).
While CAIRN_RECORD_FILE is set, `cairn.get_client()` is a RecordFileClient:
`cairn.start_run()` makes no network call and returns an ActiveRun for
CAIRN_RUN_ID whose log_metric / log_metrics / log_param / log_params /
set_tag / set_tags append JSON lines to the file. When the step ends, the
scheduler reads the file (src/pipeline/step_metrics.h, ParseSdkRecordFile)
and logs the records to the run.

File format: UTF-8 JSON objects, one per line, each ending in "\\n":
    {"metric": KEY, "value": NUMBER, "step": INT, "timestamp": UNIX_MS}
    {"param": KEY, "value": STRING}
    {"tag": KEY, "value": STRING}
A non-finite metric value is written as the string "NaN", "Infinity" or
"-Infinity" (the file stays standard JSON). Each call appends all its lines
with one write() on a file opened O_APPEND: they are in the file (the
kernel's cache) when the call returns, so a step killed later loses nothing,
and lines of concurrent threads or forked processes never interleave. The
folder is created if missing.

Rules are checked as the server would, so a script behaves the same online
and offline: MLflow key rules, value lengths, and a param logged again with
another value raises CairnError INVALID_PARAMETER_VALUE.

Artifacts (log_artifact, log_artifacts, log_text, log_dict) are copied into
CAIRN_ARTIFACT_DIR, or else the folder "artifacts" next to the record file,
keeping their artifact paths. Calls that need a server (search_runs,
get_run, log_dataset with a lookup, ...) raise CairnError "OFFLINE";
run.log_dataset() returns None, since the pipeline records each step's
dataset inputs itself.

Every start_run() in the process logs to the same run (CAIRN_RUN_ID); its
run_name becomes the tag mlflow.runName and its tags are recorded. The
default mlflow.user / mlflow.source.* tags are not written: the scheduler
sets them for the step.

Thread-safe.
"""

import json
import math
import os
import re
import shutil
import threading
import uuid

from .errors import CairnError

RECORD_FILE_ENV = "CAIRN_RECORD_FILE"
RUN_ID_ENV = "CAIRN_RUN_ID"
ARTIFACT_DIR_ENV = "CAIRN_ARTIFACT_DIR"

_MAX_KEY_LEN = 250
_MAX_PARAM_VALUE_LEN = 6000
_MAX_TAG_VALUE_LEN = 8000
_KEY_RE = re.compile(r"[A-Za-z0-9_\-. /]+")


def _invalid(message):
    return CairnError(message, "INVALID_PARAMETER_VALUE")


def _check_key(kind, key):
    """MLflow's key rules (mlflow/utils/validation.py), as the server applies them."""
    if not isinstance(key, str) or not key:
        raise _invalid(f"Missing value for required parameter '{kind}.key'.")
    if len(key) > _MAX_KEY_LEN:
        raise _invalid(f"{kind} name '{key[:64]}' had length {len(key)}, which exceeded length limit of "
                       f"{_MAX_KEY_LEN}")
    if not _KEY_RE.fullmatch(key) or key.startswith("/") or ".." in key or "//" in key:
        raise _invalid(f"Invalid {kind} name: '{key}'. Names may only contain alphanumerics, underscores (_), "
                       "dashes (-), periods (.), spaces ( ), and slashes (/), and must not resolve to other "
                       "names when treated as paths.")


def _json_number(value):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _offline_error(what):
    return CairnError(
        f"{what} needs a tracking server, but this process is offline ({RECORD_FILE_ENV} is set: it runs "
        "as a pipeline step and its records go to a file)", "OFFLINE")


class RecordFileClient:
    """The Client stand-in used while CAIRN_RECORD_FILE is set (see the module docstring)."""

    offline = True

    def __init__(self, path, run_id=None, artifact_dir=None):
        if not path or not os.path.isabs(path):
            raise CairnError(f"{RECORD_FILE_ENV} must be an absolute path, got {path!r}", "INVALID_PARAMETER_VALUE")
        self.path = path
        self.tracking_uri = "file:" + path
        self.run_id = run_id or os.environ.get(RUN_ID_ENV) or uuid.uuid4().hex
        self.artifact_dir = (artifact_dir or os.environ.get(ARTIFACT_DIR_ENV)
                             or os.path.join(os.path.dirname(path), "artifacts"))
        self._lock = threading.Lock()
        self._fd = None
        self._pid = None
        self._params = {}  # key -> value: params are immutable, as on the server

    # --- the file ---------------------------------------------------------------

    def _append_locked(self, records):
        if not records:
            return
        data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records).encode("utf-8")
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own descriptor
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self):
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    # --- runs -------------------------------------------------------------------

    def start_run(self, run_name=None, tags=None):
        """The SDK run dict for CAIRN_RUN_ID; records run_name and tags."""
        all_tags = {}
        if run_name:
            all_tags["mlflow.runName"] = str(run_name)
        all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
        if all_tags:
            self.log_batch(self.run_id, tags=[{"key": k, "value": v} for k, v in all_tags.items()])
        return {
            "info": {
                "run_id": self.run_id,
                "run_uuid": self.run_id,
                "experiment_id": os.environ.get("CAIRN_EXPERIMENT_ID", ""),
                "run_name": run_name or "",
                "status": "RUNNING",
                "artifact_uri": "",
                "lifecycle_stage": "active",
            },
            "data": {"metrics": {}, "params": {}, "tags": all_tags},
            "inputs": {},
        }

    def update_run(self, run_id, status=None, end_time=None, run_name=None):
        # The scheduler sets the run's status from the step's exit; only a new name is worth recording.
        if run_name is not None:
            self.set_tag(run_id, "mlflow.runName", run_name)
        info = {"run_id": run_id}
        if status is not None:
            info["status"] = status
        if end_time is not None:
            info["end_time"] = end_time
        return info

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        records = []
        for p in params:
            key, value = p["key"], str(p["value"])
            _check_key("param", key)
            if len(value) > _MAX_PARAM_VALUE_LEN:
                raise _invalid(f"Param value '{value[:32]}...' had length {len(value)}, which exceeded length "
                               f"limit of {_MAX_PARAM_VALUE_LEN}")
            records.append({"param": key, "value": value})
        for t in tags:
            key, value = t["key"], str(t["value"])
            _check_key("tag", key)
            if len(value) > _MAX_TAG_VALUE_LEN:
                raise _invalid(f"Tag value '{value[:32]}...' had length {len(value)}, which exceeded length "
                               f"limit of {_MAX_TAG_VALUE_LEN}")
            records.append({"tag": key, "value": value})
        for m in metrics:
            _check_key("metric", m["key"])
            records.append({"metric": m["key"], "value": _json_number(float(m["value"])),
                            "step": int(m.get("step", 0)), "timestamp": int(m["timestamp"])})
        with self._lock:
            seen = dict(self._params)
            fresh = []
            for r in records:
                if "param" in r:
                    old = seen.get(r["param"])
                    if old is not None and old != r["value"]:
                        raise _invalid(f"Changing param values is not allowed. Param with key='{r['param']}' was "
                                       f"already logged with value='{old}' for run ID='{run_id}'. Attempted "
                                       f"logging new value '{r['value']}'.")
                    if old is not None:
                        continue  # logged before with this value: nothing new
                    seen[r["param"]] = r["value"]
                fresh.append(r)
            self._append_locked(fresh)
            self._params = seen

    def set_tag(self, run_id, key, value):
        self.log_batch(run_id, tags=[{"key": key, "value": value}])

    # --- artifacts: copied next to the record file ----------------------------------

    def remember_artifact_uri(self, run_id, artifact_uri):
        pass

    def _artifact_path(self, rel):
        from .client import _check_rel_path  # the same path rules as online
        p = _check_rel_path(rel, "artifact_path")
        return os.path.join(self.artifact_dir, *p.split("/")) if p else self.artifact_dir

    def log_artifact(self, run_id, local_path, artifact_path=None):
        if not os.path.isfile(local_path):
            raise FileNotFoundError(f"not a file: {local_path}")
        dest = self._artifact_path(artifact_path)
        os.makedirs(dest, exist_ok=True)
        shutil.copyfile(local_path, os.path.join(dest, os.path.basename(local_path)))

    def log_artifacts(self, run_id, local_dir, artifact_path=None):
        if not os.path.isdir(local_dir):
            raise NotADirectoryError(f"not a directory: {local_dir}")
        dest = self._artifact_path(artifact_path)
        shutil.copytree(local_dir, dest, dirs_exist_ok=True)

    def log_bytes(self, run_id, data, artifact_file, content_type="application/octet-stream"):
        dest = self._artifact_path(artifact_file)
        if dest == self.artifact_dir:
            raise CairnError("artifact_file must name a file", "INVALID_PARAMETER_VALUE")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)

    def list_artifacts(self, run_id, path=None):
        base = self._artifact_path(path)
        if not os.path.isdir(base):
            return []
        prefix = _clean_prefix(path)
        out = []
        for name in sorted(os.listdir(base)):
            full = os.path.join(base, name)
            entry = {"path": f"{prefix}{name}", "is_dir": os.path.isdir(full)}
            if not entry["is_dir"]:
                entry["file_size"] = os.path.getsize(full)
            out.append(entry)
        return out

    # --- what needs a server ---------------------------------------------------------

    def log_dataset_input(self, run_id, dataset, ref="main", context="training", split=None):
        return None  # the pipeline records each step's inputs, resolved to commits

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise _offline_error(f"Client.{name}")

        return unavailable


def _clean_prefix(path):
    p = (path or "").replace(os.sep, "/").strip("/")
    return f"{p}/" if p else ""
