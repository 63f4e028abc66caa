"""Background batching of metrics into log-batch requests.

Internal module. `MetricBatcher` is thread-safe: any thread may add() and
flush(); one worker thread (started lazily, daemon) sends batches in the order
metrics were added, so a run's metric history keeps its logging order.

A batch is sent when `max_batch` metrics are waiting, when the oldest waiting
metric is `interval` seconds old, or when flush()/close() asks for it. If a
send fails (after the transport's retries), that batch is dropped and the
first such error is kept; it is raised by the next add(), flush() or
raise_pending_error(), so failures are never silent. add() blocks while
`max_pending` metrics are waiting (back-pressure instead of unbounded memory).

Usage:
    b = MetricBatcher(lambda metrics: client.log_batch(run_id, metrics=metrics))
    b.add([{"key": "loss", "value": 0.1, "timestamp": 1700000000000, "step": 0}])
    b.flush()   # everything added so far is on the server (or the error is raised)
    b.close()
"""

import collections
import threading
import time

from .errors import CairnError


class MetricBatcher:
    def __init__(self, send, max_batch=1000, interval=1.0, max_pending=100_000, name="cairn-metrics",
                 on_worker_exit=None):
        self._send = send
        self._on_worker_exit = on_worker_exit  # called on the worker thread as it stops
        self._max_batch = max_batch
        self._interval = interval
        self._max_pending = max(max_pending, max_batch)
        self._name = name
        self._cv = threading.Condition()
        self._buf = collections.deque()
        self._oldest = 0.0  # monotonic time the oldest waiting metric was added
        self._added = 0  # metrics accepted by add()
        self._taken = 0  # metrics the worker has taken out of _buf
        self._done = 0  # metrics whose send finished (sent or dropped)
        self._flush_upto = 0  # flush requested for metrics [0, _flush_upto)
        self._error = None  # first failure not yet reported
        self._dropped = 0  # metrics lost with failed batches since last report
        self._closed = False
        self._thread = None

    # --- producer side ------------------------------------------------------

    def add(self, metrics):
        """Queues metric dicts. Raises a pending background error first, if any."""
        if not metrics:
            return
        with self._cv:
            self._raise_error_locked()
            if self._closed:
                raise CairnError("metrics logged after the run ended", "INVALID_STATE")
            self._ensure_thread_locked()
            for m in metrics:
                while len(self._buf) >= self._max_pending:
                    self._cv.wait()
                if not self._buf:
                    self._oldest = time.monotonic()
                self._buf.append(m)
                self._added += 1
                if len(self._buf) >= self._max_batch:
                    self._cv.notify_all()

    def flush(self, timeout=None):
        """Blocks until every metric added before this call has been sent.

        Raises the pending background error, if any; CairnError with
        error_code "DEADLINE_EXCEEDED" if `timeout` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            target = self._added
            if target > self._flush_upto:
                self._flush_upto = target
                self._cv.notify_all()
            while self._done < target:
                if self._thread is None or not self._thread.is_alive():
                    raise CairnError("metric sender thread is not running", "INTERNAL_ERROR")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise CairnError(
                        f"flush timed out with {target - self._done} metrics unsent",
                        "DEADLINE_EXCEEDED",
                    )
                self._cv.wait(remaining)
            self._raise_error_locked()

    def raise_pending_error(self):
        with self._cv:
            self._raise_error_locked()

    def close(self, timeout=None):
        """Flushes, stops the worker and raises any pending error. Idempotent."""
        try:
            if self._thread is not None:
                self.flush(timeout)
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    @property
    def pending(self):
        with self._cv:
            return self._added - self._done

    # --- internals ----------------------------------------------------------

    def _raise_error_locked(self):
        if self._error is None:
            return
        err, dropped = self._error, self._dropped
        self._error, self._dropped = None, 0
        code = getattr(err, "error_code", "INTERNAL_ERROR")
        status = getattr(err, "http_status", None)
        msg = getattr(err, "message", str(err))
        raise CairnError(
            f"background metric upload failed, {dropped} metric(s) not logged: {msg}", code, status
        ) from err

    def _ensure_thread_locked(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _should_send_locked(self):
        if not self._buf:
            return False
        return (
            len(self._buf) >= self._max_batch
            or self._flush_upto > self._taken
            or self._closed
            or time.monotonic() - self._oldest >= self._interval
        )

    def _run(self):
        try:
            self._loop()
        finally:
            if self._on_worker_exit is not None:
                try:
                    self._on_worker_exit()
                except Exception:  # noqa: BLE001 - cleanup only
                    pass

    def _loop(self):
        while True:
            with self._cv:
                while not self._should_send_locked():
                    if self._closed and not self._buf:
                        return
                    wait = None
                    if self._buf:
                        wait = max(0.0, self._interval - (time.monotonic() - self._oldest))
                    self._cv.wait(wait)
                n = min(self._max_batch, len(self._buf))
                batch = [self._buf.popleft() for _ in range(n)]
                self._taken += n
                # Metrics still waiting are overdue as well; keep _oldest so they go next.
                self._cv.notify_all()  # wake producers blocked on max_pending
            error = None
            try:
                self._send(batch)
            except BaseException as e:  # noqa: BLE001 - reported to the caller, never lost
                error = e
            with self._cv:
                self._done += n
                if error is not None:
                    self._dropped += n
                    if self._error is None:
                        self._error = error
                self._cv.notify_all()


class DirectSender:
    """MetricBatcher's interface without batching: add() sends at once on the
    caller's thread (offline mode, where a send is one append to a file), so
    an error is raised by the call that caused it."""

    def __init__(self, send):
        self._send = send
        self._lock = threading.Lock()
        self._closed = False

    def add(self, metrics):
        if not metrics:
            return
        with self._lock:
            if self._closed:
                raise CairnError("metrics logged after the run ended", "INVALID_STATE")
        self._send(list(metrics))

    def flush(self, timeout=None):
        pass

    def raise_pending_error(self):
        pass

    def close(self, timeout=None):
        with self._lock:
            self._closed = True

    @property
    def pending(self):
        return 0
