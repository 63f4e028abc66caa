"""HTTP transport for the Cairn SDK: JSON calls, streamed uploads/downloads, retries.

Internal module. Thread-safe: every thread gets its own keep-alive
connection (the background metric sender and the caller's thread never share
one socket).

Retry policy (bounded): connection failures (refused, reset, closed before a
response) and HTTP 429/502/503/504 are retried with exponential backoff and
jitter, honouring Retry-After; after `max_retries` retries the last error is
raised as CairnError. Timeouts are not retried: the server may have acted on
the request. A request that fails on a reused keep-alive socket the server has
closed is re-sent once at once on a fresh connection (it never reached the
server), without counting as a retry.

Usage:
    t = Transport("http://127.0.0.1:5000")
    exp = t.call("GET", "/mlflow/experiments/get-by-name", query={"experiment_name": "x"})
"""

import base64
import http.client
import json
import math
import os
import random
import socket
import threading
import time
import urllib.parse

from .errors import CONNECTION_ERROR, CairnError

API_PREFIX = "/api/2.0"
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_USER_AGENT = "cairn-python-sdk/0.1"
_CHUNK = 1 << 20  # 1 MiB, for streaming file bodies in both directions


def _env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _json_default_safe(obj):
    """Maps non-finite floats to the strings protobuf's JSON mapping uses."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if math.isnan(obj):
            return "NaN"
        return "Infinity" if obj > 0 else "-Infinity"
    return obj


def encode_json(body):
    """json.dumps that never emits the non-standard NaN/Infinity tokens."""

    def fix(o):
        if isinstance(o, float):
            return _json_default_safe(o)
        if isinstance(o, dict):
            return {k: fix(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [fix(v) for v in o]
        return o

    return json.dumps(fix(body), allow_nan=False).encode("utf-8")


class Transport:
    """Talks HTTP to one tracking server. See the module docstring."""

    def __init__(self, base_url, timeout=None, max_retries=None, backoff=0.5, max_backoff=8.0):
        parsed = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise CairnError(
                f"tracking URI must be http(s)://host[:port][/prefix], got {base_url!r}",
                error_code="INVALID_PARAMETER_VALUE",
            )
        self.base_url = base_url.rstrip("/")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")
        self.timeout = timeout if timeout is not None else _env_float("MLFLOW_HTTP_REQUEST_TIMEOUT", 120.0)
        self.max_retries = (
            max_retries
            if max_retries is not None
            else int(_env_float("CAIRN_HTTP_MAX_RETRIES", 5))
        )
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._local = threading.local()
        self._headers = {"User-Agent": _USER_AGENT}
        token = os.environ.get("CAIRN_TOKEN") or os.environ.get("MLFLOW_TRACKING_TOKEN")
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if user and password:
            cred = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"
        elif token:
            self._headers["Authorization"] = f"Bearer {token}"

    # --- connections -------------------------------------------------------

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout, blocksize=_CHUNK)
            self._local.conn = conn
            self._local.used = False
        return conn

    def _drop_connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
        self._local.conn = None

    def close(self):
        """Closes the calling thread's connection (others close when their threads end)."""
        self._drop_connection()

    def _sleep_backoff(self, attempt, retry_after=None):
        delay = min(self.max_backoff, self.backoff * (2**attempt))
        delay *= 0.5 + random.random() / 2
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), 30.0))
            except ValueError:
                pass
        time.sleep(delay)

    # --- core request ------------------------------------------------------

    def url_path(self, path, query=None):
        """Full request target for `path` (absolute, e.g. /api/2.0/...)."""
        target = self._prefix + path
        if query:
            items = []
            for k, v in query.items():
                if v is None:
                    continue
                if isinstance(v, (list, tuple)):
                    items.extend((k, str(x)) for x in v)
                else:
                    items.append((k, str(v)))
            if items:
                target += "?" + urllib.parse.urlencode(items)
        return target

    def request(self, method, path, body=None, headers=None, query=None, what=None):
        """Sends one request with retries and returns the open HTTPResponse (status < 300).

        `body` is bytes, None, or a file object opened in binary mode (then
        headers must carry Content-Length; it is rewound before each retry).
        The caller must read the response to the end. Raises CairnError.
        """
        target = self.url_path(path, query)
        what = what or f"{method} {path}"
        all_headers = dict(self._headers)
        if headers:
            all_headers.update(headers)
        start_pos = body.tell() if hasattr(body, "read") else None
        attempt = 0
        stale_retry_used = False
        while True:
            conn = self._connection()
            reused = self._local.used
            if start_pos is not None:
                body.seek(start_pos)
            try:
                conn.request(method, target, body=body, headers=all_headers)
                resp = conn.getresponse()
            except (TimeoutError, socket.timeout) as e:  # the server may have acted on it
                self._drop_connection()
                raise CairnError(f"{what}: timed out after {self.timeout}s", CONNECTION_ERROR) from e
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                if reused and not stale_retry_used and isinstance(
                    e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    stale_retry_used = True  # the keep-alive socket was closed by the server
                    continue
                if attempt >= self.max_retries:
                    raise CairnError(
                        f"{what}: cannot reach {self.base_url}: {e}", CONNECTION_ERROR
                    ) from e
                self._sleep_backoff(attempt)
                attempt += 1
                continue
            self._local.used = True
            if resp.status < 300:
                return resp
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException):
                data = b""
                self._drop_connection()
            if resp.status in _RETRY_STATUSES and attempt < self.max_retries:
                self._sleep_backoff(attempt, resp.getheader("Retry-After"))
                attempt += 1
                continue
            raise CairnError.from_response(resp.status, data, what)

    def _read_all(self, resp, what):
        try:
            return resp.read()
        except (OSError, http.client.HTTPException) as e:
            self._drop_connection()
            raise CairnError(f"{what}: connection lost while reading the response: {e}",
                             CONNECTION_ERROR) from e

    # --- helpers -----------------------------------------------------------

    def call(self, method, endpoint, json_body=None, query=None, prefix=API_PREFIX):
        """Calls a REST endpoint (`endpoint` relative to `prefix`, by default
        MLflow's /api/2.0) and returns the JSON dict.

        GET sends `query` as URL parameters (lists become repeated keys, as
        the requests library does); other methods send `json_body` as JSON.
        """
        what = f"{method} {prefix}{endpoint}"
        body = None
        headers = {"Accept": "application/json"}
        if method != "GET":
            body = encode_json(json_body if json_body is not None else {})
            headers["Content-Type"] = "application/json"
        resp = self.request(method, prefix + endpoint, body=body, headers=headers,
                            query=query, what=what)
        data = self._read_all(resp, what)
        if not data.strip():
            return {}
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CairnError(f"{what}: response is not JSON: {data[:200]!r}",
                             "INTERNAL_ERROR", resp.status) from e
        if not isinstance(parsed, dict):
            raise CairnError(f"{what}: response is not a JSON object", "INTERNAL_ERROR", resp.status)
        return parsed

    def upload(self, path, source, content_type="application/octet-stream"):
        """PUTs `source` (bytes, or a local file path streamed from disk) to `path`."""
        what = f"PUT {path}"
        headers = {"Content-Type": content_type}
        if isinstance(source, (bytes, bytearray)):
            headers["Content-Length"] = str(len(source))
            resp = self.request("PUT", path, body=bytes(source), headers=headers, what=what)
        else:
            with open(source, "rb") as f:
                headers["Content-Length"] = str(os.fstat(f.fileno()).st_size)
                resp = self.request("PUT", path, body=f, headers=headers, what=what)
        self._read_all(resp, what)

    def download(self, path, local_path):
        """GETs `path` and streams the body into `local_path` (via a temp file + rename)."""
        what = f"GET {path}"
        tmp = f"{local_path}.part-{os.getpid()}-{threading.get_ident()}"
        resp = self.request("GET", path, what=what)
        try:
            with open(tmp, "wb") as f:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
            length = resp.getheader("Content-Length")
            if length is not None and os.path.getsize(tmp) != int(length):
                raise CairnError(f"{what}: got {os.path.getsize(tmp)} of {length} bytes",
                                 CONNECTION_ERROR)
            os.replace(tmp, local_path)
        except (OSError, http.client.HTTPException) as e:
            self._drop_connection()
            raise CairnError(f"{what}: download failed: {e}", CONNECTION_ERROR) from e
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
