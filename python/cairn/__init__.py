"""Cairn Python SDK: log runs to a Cairn (or any MLflow-compatible) tracking server.

Standard library only. Talks MLflow's REST API 2.0 and the mlflow-artifacts
proxy API, so it works against `cairn server` and `mlflow server
--serve-artifacts` alike.

Thread-safety: all functions and ActiveRun methods may be called from any
thread. The module keeps one default Client for the tracking URI, replaced by
set_tracking_uri().

Offline (inside a pipeline step): when env CAIRN_RECORD_FILE is set, runs
make no network call; their metrics, params and tags are appended to that
file for the pipeline to log (see cairn/_offline.py).

Usage:
    import cairn
    cairn.set_tracking_uri("http://127.0.0.1:5000")   # or env CAIRN_URL / MLFLOW_TRACKING_URI
    with cairn.start_run(experiment="wine", run_name="rf-100") as run:
        run.log_params({"model": "rf", "n_estimators": 100})
        for step, acc in enumerate(accuracies):
            run.log_metric("acc", acc, step=step)
        run.log_artifact("model.pkl")
    best = cairn.search_runs(experiment_names=["wine"], order_by=["metrics.acc DESC"], max_results=1)
"""

import atexit
import os
import sys
import threading

from ._offline import RECORD_FILE_ENV, RecordFileClient
from .client import Client, current_user
from .errors import CairnError
from .run import ActiveRun, end_live_runs

__all__ = [
    "ActiveRun",
    "CairnError",
    "Client",
    "download_artifact",
    "get_client",
    "get_metric_history",
    "get_run",
    "get_tracking_uri",
    "list_artifacts",
    "search_runs",
    "set_tracking_uri",
    "start_run",
]
__version__ = "0.1.0"

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"

_lock = threading.Lock()
_tracking_uri = None
_client = None
_offline_client = None  # the RecordFileClient while CAIRN_RECORD_FILE is set


def _env_tracking_uri():
    return os.environ.get("CAIRN_URL") or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def set_tracking_uri(uri):
    """Sets the server all module-level calls and new runs use (http(s)://host:port)."""
    global _tracking_uri, _client
    client = Client(uri)  # validates the URI before anything changes
    with _lock:
        old = _client
        _tracking_uri = client.tracking_uri
        _client = client
    if old is not None:
        old.close()  # this thread's keep-alive connection to the previous server


def get_tracking_uri():
    with _lock:
        return _tracking_uri or _env_tracking_uri()


def get_client():
    """The default Client (created on first use from get_tracking_uri()).

    While env CAIRN_RECORD_FILE is set: the offline RecordFileClient for that
    file, whatever the tracking URI."""
    global _client, _offline_client
    record_file = os.environ.get(RECORD_FILE_ENV)
    with _lock:
        if record_file:
            if _offline_client is None or _offline_client.path != record_file:
                _offline_client = RecordFileClient(record_file)
            return _offline_client
        if _client is None:
            _client = Client(_tracking_uri or _env_tracking_uri())
        return _client


def _source_name():
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 in ("", "-c", "-m"):
        return "<console>" if argv0 in ("", "-c") else argv0
    return os.path.abspath(argv0) if os.path.exists(argv0) else argv0


def start_run(experiment=None, run_name=None, tags=None, experiment_id=None, flush_interval=1.0):
    """Creates a run and returns its ActiveRun (use it as a context manager).

    The experiment is found by name (created if missing; concurrent creators
    are tolerated), or given by `experiment_id`. Without either, env
    CAIRN_EXPERIMENT / MLFLOW_EXPERIMENT_NAME is used, else "Default".
    Tags mlflow.user, mlflow.source.name and mlflow.source.type are set as
    MLflow does; `tags` may override them.

    Offline (env CAIRN_RECORD_FILE set): the run is the pipeline step's run
    (env CAIRN_RUN_ID); experiment arguments are ignored, run_name and tags
    are recorded, nothing goes over the network.
    """
    client = get_client()
    if getattr(client, "offline", False):
        return ActiveRun(client, client.start_run(run_name=run_name, tags=tags), flush_interval=flush_interval)
    if experiment_id is None:
        name = (experiment or os.environ.get("CAIRN_EXPERIMENT")
                or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default")
        experiment_id = client.get_or_create_experiment(name)
    user = current_user()
    all_tags = {
        "mlflow.user": user,
        "mlflow.source.name": _source_name(),
        "mlflow.source.type": "LOCAL",
    }
    all_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags, user_id=user)
    return ActiveRun(client, run, flush_interval=flush_interval)


def search_runs(experiment_names=None, experiment_ids=None, filter_string="", order_by=None,
                max_results=None, run_view_type="ACTIVE_ONLY"):
    """Runs (SDK run dicts) matching an MLflow filter, e.g. "metrics.acc > 0.9 and params.model = 'rf'".

    order_by: e.g. ["metrics.acc DESC", "attributes.start_time"]. Follows page
    tokens; max_results caps the total (None: all).
    """
    return get_client().search_runs(
        experiment_ids=experiment_ids, experiment_names=experiment_names,
        filter_string=filter_string, order_by=order_by, max_results=max_results,
        run_view_type=run_view_type,
    )


def get_run(run_id):
    return get_client().get_run(run_id)


def get_metric_history(run_id, key):
    return get_client().get_metric_history(run_id, key)


def list_artifacts(run_id, path=None):
    return get_client().list_artifacts(run_id, path)


def download_artifact(run_id, path, dst):
    """Downloads artifact file or directory `path` into local directory `dst`; returns the local path."""
    return get_client().download_artifact(run_id, path, dst)


atexit.register(end_live_runs)
