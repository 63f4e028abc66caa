"""pytest fixtures: the real `cairn server` on an ephemeral port, and the SDK on sys.path.

The server binary is $CAIRN_BIN, else <repo>/build/src/main/cairn. Tests that
need it are skipped (not failed) when it does not exist. The server gets a
fresh temp data dir per test session; its stderr goes to server.log there.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

import cairn  # noqa: E402

_LISTEN_RE = re.compile(r"Cairn server listening on (http://[^\s]+)")
STARTUP_TIMEOUT_S = 30


def server_binary():
    return Path(os.environ.get("CAIRN_BIN") or REPO / "build" / "src" / "main" / "cairn")


class ServerProcess:
    def __init__(self, url, data_dir, proc, log_path):
        self.url = url.rstrip("/")
        self.data_dir = data_dir
        self.proc = proc
        self.log_path = log_path

    def log_tail(self, n=4000):
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def cairn_server(tmp_path_factory):
    binary = server_binary()
    if not binary.exists():
        pytest.skip(f"cairn server binary not found at {binary} (set CAIRN_BIN)")
    data_dir = tmp_path_factory.mktemp("cairn-data")
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(binary), "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
    )
    first_line = []
    got_line = threading.Event()

    def pump():
        # Read the announcement line, then keep draining stdout so the server never blocks.
        for raw in proc.stdout:
            if not got_line.is_set():
                first_line.append(raw.decode(errors="replace"))
                got_line.set()
            else:
                log.write(raw)
        got_line.set()

    threading.Thread(target=pump, daemon=True).start()
    got_line.wait(STARTUP_TIMEOUT_S)
    line = first_line[0] if first_line else ""
    m = _LISTEN_RE.search(line)
    if not m:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(f"server did not announce its address within {STARTUP_TIMEOUT_S}s; "
                    f"stdout line: {line!r}; stderr: {Path(log_path).read_text(errors='replace')[-2000:]}")
    server = ServerProcess(m.group(1), data_dir, proc, log_path)
    yield server
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    log.close()
    assert rc == 0, f"server did not exit cleanly on SIGTERM (rc={rc}); log tail:\n{server.log_tail()}"


@pytest.fixture
def tracking(cairn_server):
    """The cairn module pointed at the test server."""
    cairn.set_tracking_uri(cairn_server.url)
    return cairn


@pytest.fixture
def exp_name(request):
    """An experiment name unique to this test."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
