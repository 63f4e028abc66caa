"""`ActiveRun`: the handle `cairn.start_run()` returns; logs to one run.

Thread-safe: params, tags and artifacts are sent at once by the calling
thread; metrics go through a MetricBatcher (one background thread per run)
that sends log-batch requests of up to 1000 metrics, flushed when full, about
every second, on flush() and at end(). A failed background send is raised by
the next call on the run (or by flush()/end()), never dropped silently.

Usage:
    with cairn.start_run(experiment="demo", run_name="lr-0.1") as run:
        run.log_params({"lr": 0.1, "epochs": 3})
        for epoch in range(3):
            run.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
        run.log_artifact("model.pkl")
    # here the run is FINISHED (FAILED if an exception escaped, KILLED on Ctrl-C)
"""

import json
import numbers
import sys
import threading

from ._batching import DirectSender, MetricBatcher
from .client import MAX_METRICS_PER_BATCH, now_ms
from .errors import CairnError

_MAX_KEY_LEN = 250
_live_runs = set()  # runs not yet ended; the atexit hook ends them
_live_lock = threading.Lock()


def _check_key(key, what):
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LEN:
        raise CairnError(f"invalid {what} key {key!r}: a non-empty string of at most "
                         f"{_MAX_KEY_LEN} characters", "INVALID_PARAMETER_VALUE")


def _param_value(v):
    if isinstance(v, (dict, list, tuple)):
        try:
            return json.dumps(v, sort_keys=True)
        except (TypeError, ValueError):
            return str(v)
    return str(v)


class ActiveRun:
    """See the module docstring. Created by cairn.start_run / Client-level helpers."""

    def __init__(self, client, run, flush_interval=1.0):
        self._client = client
        self._info = dict(run["info"])
        self._lock = threading.Lock()
        self._ended = False
        if getattr(client, "offline", False):
            # Appending to the record file is cheap: each call writes at once.
            self._batcher = DirectSender(lambda metrics: client.log_batch(self.id, metrics=metrics))
        else:
            self._batcher = MetricBatcher(
                lambda metrics: client.log_batch(self.id, metrics=metrics),
                max_batch=MAX_METRICS_PER_BATCH,
                interval=flush_interval,
                name=f"cairn-metrics-{self.id[:8]}",
                on_worker_exit=client.close,  # closes the worker thread's own connection
            )
        if self._info.get("artifact_uri"):
            try:
                client.remember_artifact_uri(self.id, self._info["artifact_uri"])
            except CairnError:
                pass  # not a proxied artifact root; artifact calls will raise
        with _live_lock:
            _live_runs.add(self)

    # --- identity -----------------------------------------------------------

    @property
    def id(self):
        return self._info["run_id"]

    @property
    def info(self):
        """The run info dict (run_id, experiment_id, run_name, status, artifact_uri, ...)."""
        return dict(self._info)

    @property
    def experiment_id(self):
        return str(self._info["experiment_id"])

    def __repr__(self):
        return f"<cairn.ActiveRun {self.id} status={self._info.get('status')}>"

    # --- params and tags: sent immediately ------------------------------------

    def log_param(self, key, value):
        self.log_params({key: value})

    def log_params(self, params):
        """Logs params (values converted to str). Params are immutable: logging a
        different value for an existing key raises INVALID_PARAMETER_VALUE."""
        self._check_usable()
        items = []
        for k, v in params.items():
            _check_key(k, "param")
            items.append({"key": k, "value": _param_value(v)})
        self._client.log_batch(self.id, params=items)

    def set_tag(self, key, value):
        self.set_tags({key: value})

    def set_tags(self, tags):
        self._check_usable()
        items = []
        for k, v in tags.items():
            _check_key(k, "tag")
            items.append({"key": k, "value": str(v)})
        if len(items) == 1:
            self._client.set_tag(self.id, items[0]["key"], items[0]["value"])
        else:
            self._client.log_batch(self.id, tags=items)

    def log_dataset(self, dataset, ref="main", context="training", split=None):
        """Records that this run read `dataset` at `ref` (branch, tag or commit);
        returns the commit dict. `context` is e.g. "training" or "evaluation"."""
        self._check_usable()
        return self._client.log_dataset_input(self.id, dataset, ref=ref, context=context, split=split)

    # --- metrics: batched in the background -----------------------------------

    def log_metric(self, key, value, step=None, timestamp=None):
        self._batcher.add([self._metric(key, value, step, timestamp)])

    def log_metrics(self, metrics, step=None, timestamp=None):
        ts = timestamp if timestamp is not None else now_ms()
        self._batcher.add([self._metric(k, v, step, ts) for k, v in metrics.items()])

    def _metric(self, key, value, step, timestamp):
        _check_key(key, "metric")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            try:
                value = float(value)  # e.g. numpy scalars, 0-d arrays
            except (TypeError, ValueError):
                raise CairnError(f"metric {key!r}: value {value!r} is not a number",
                                 "INVALID_PARAMETER_VALUE") from None
        value = float(value)
        if step is None:
            step = 0
        elif isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise CairnError(f"metric {key!r}: step {step!r} is not an integer",
                             "INVALID_PARAMETER_VALUE")
        return {
            "key": key,
            "value": value,  # NaN/inf are encoded as "NaN"/"Infinity" by the transport
            "timestamp": int(timestamp) if timestamp is not None else now_ms(),
            "step": int(step),
        }

    def flush(self, timeout=None):
        """Blocks until every metric logged so far is on the server; raises a pending error."""
        self._batcher.flush(timeout)

    # --- artifacts: sent immediately, streamed -----------------------------------

    def log_artifact(self, local_path, artifact_path=None):
        self._check_usable()
        self._client.log_artifact(self.id, local_path, artifact_path)

    def log_artifacts(self, local_dir, artifact_path=None):
        self._check_usable()
        self._client.log_artifacts(self.id, local_dir, artifact_path)

    def log_text(self, text, artifact_file):
        self._check_usable()
        self._client.log_bytes(self.id, text.encode("utf-8"), artifact_file,
                               content_type="text/plain; charset=utf-8")

    def log_dict(self, dictionary, artifact_file):
        self._check_usable()
        data = json.dumps(dictionary, indent=2, sort_keys=True, default=str)
        self._client.log_bytes(self.id, data.encode("utf-8"), artifact_file,
                               content_type="application/json")

    def list_artifacts(self, path=None):
        return self._client.list_artifacts(self.id, path)

    # --- lifecycle ------------------------------------------------------------

    def _check_usable(self):
        if self._ended:
            raise CairnError(f"run {self.id} has ended", "INVALID_STATE")
        self._batcher.raise_pending_error()

    def end(self, status="FINISHED"):
        """Flushes metrics and sets the final status. Idempotent.

        If metrics could not be sent, the run is marked FAILED and the error is
        raised (after the status update).
        """
        with self._lock:
            if self._ended:
                return
            self._ended = True
        with _live_lock:
            _live_runs.discard(self)
        flush_error = None
        try:
            self._batcher.close()
        except CairnError as e:
            flush_error = e
            if status == "FINISHED":
                status = "FAILED"
        info = self._client.update_run(self.id, status=status, end_time=now_ms())
        self._info.update(info or {"status": status})
        if flush_error is not None:
            raise flush_error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.end("FINISHED")
            return False
        if issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        elif issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (None, 0):
            status = "FINISHED"  # sys.exit(0) is a normal end
        else:
            status = "FAILED"
        try:
            self.end(status)
        except Exception as e:  # noqa: BLE001 - never mask the user's exception
            print(f"cairn: could not end run {self.id} cleanly: {e}", file=sys.stderr)
        return False  # re-raise


def end_live_runs():
    """atexit hook: ends runs the script left open (FINISHED, as MLflow does)."""
    with _live_lock:
        runs = list(_live_runs)
    for run in runs:
        try:
            run.end("FINISHED")
        except Exception as e:  # noqa: BLE001 - interpreter is exiting; report and go on
            print(f"cairn: could not end run {run.id} at exit: {e}", file=sys.stderr)
