"""SDK unit tests against an in-memory fake server (no cairn binary needed).

They cover client-side logic: batching, ordering, flush timing, retries,
error surfacing, the experiment-creation race, streamed uploads and paging.
"""

import os
import threading
import time

import pytest

import cairn
from cairn import _batching
from cairn.errors import CairnError
from fake_mlflow_server import FakeMlflowServer


@pytest.fixture
def fake():
    srv = FakeMlflowServer().start()
    cairn.set_tracking_uri(srv.url)
    yield srv
    srv.stop()


def _batch_calls(fake):
    return [r for r in fake.calls("/mlflow/runs/log-batch", "POST")]


def test_5000_metrics_are_sent_in_order_in_batches_of_at_most_1000(fake):
    with cairn.start_run(experiment="e") as run:
        for i in range(5000):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
    sizes = [len(r[2].get("metrics", [])) for r in _batch_calls(fake) if r[2].get("metrics")]
    assert sum(sizes) == 5000
    assert max(sizes) <= 1000
    hist = cairn.get_metric_history(run.id, "loss")
    assert [m["step"] for m in hist] == list(range(5000))
    assert hist[10]["value"] == pytest.approx(1.0 / 11)
    assert cairn.get_run(run.id)["info"]["status"] == "FINISHED"


def test_metrics_are_sent_after_about_a_second_without_flush(fake):
    run = cairn.start_run(experiment="e")
    run.log_metric("acc", 0.5)
    run.log_metrics({"a": 1, "b": 2}, step=3)
    assert _batch_calls(fake) == []  # nothing sent synchronously
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _batch_calls(fake):
        time.sleep(0.05)
    calls = _batch_calls(fake)
    assert len(calls) == 1
    assert [m["key"] for m in calls[0][2]["metrics"]] == ["acc", "a", "b"]
    assert calls[0][2]["metrics"][1]["step"] == 3
    run.end()


def test_flush_sends_immediately(fake):
    run = cairn.start_run(experiment="e", flush_interval=60)
    run.log_metric("acc", 0.5, step=1, timestamp=123)
    run.flush(timeout=10)
    (call,) = _batch_calls(fake)
    assert call[2] == {"run_id": run.id,
                       "metrics": [{"key": "acc", "value": 0.5, "timestamp": 123, "step": 1}]}
    run.end()


def test_params_and_tags_are_sent_immediately(fake):
    with cairn.start_run(experiment="e", run_name="r1", tags={"team": "x"}) as run:
        run.log_params({"lr": 0.1, "layers": [1, 2]})
        run.set_tag("stage", "dev")
        got = cairn.get_run(run.id)["data"]
        assert got["params"] == {"lr": "0.1", "layers": "[1, 2]"}
        assert got["tags"]["stage"] == "dev"
        assert got["tags"]["team"] == "x"
        assert got["tags"]["mlflow.user"]
        assert got["tags"]["mlflow.source.type"] == "LOCAL"
    create = fake.calls("/mlflow/runs/create")[0][2]
    assert create["run_name"] == "r1"
    assert isinstance(create["start_time"], int) and create["start_time"] > 1_600_000_000_000
    assert create["user_id"] == cairn.client.current_user()


def test_many_params_are_split_into_batches_of_100(fake):
    with cairn.start_run(experiment="e") as run:
        run.log_params({f"p{i}": i for i in range(250)})
    sizes = [len(r[2]["params"]) for r in _batch_calls(fake) if r[2].get("params")]
    assert sizes == [100, 100, 50]


def test_exception_marks_run_failed_and_is_reraised(fake):
    with pytest.raises(ZeroDivisionError):
        with cairn.start_run(experiment="e") as run:
            run.log_metric("x", 1)
            1 / 0
    info = cairn.get_run(run.id)["info"]
    assert info["status"] == "FAILED"
    assert cairn.get_metric_history(run.id, "x")[0]["value"] == 1  # flushed anyway


def test_keyboard_interrupt_marks_run_killed(fake):
    with pytest.raises(KeyboardInterrupt):
        with cairn.start_run(experiment="e") as run:
            raise KeyboardInterrupt
    assert cairn.get_run(run.id)["info"]["status"] == "KILLED"


def test_sys_exit_zero_finishes_and_nonzero_fails(fake):
    with pytest.raises(SystemExit):
        with cairn.start_run(experiment="e") as ok_run:
            raise SystemExit(0)
    with pytest.raises(SystemExit):
        with cairn.start_run(experiment="e") as bad_run:
            raise SystemExit(3)
    assert cairn.get_run(ok_run.id)["info"]["status"] == "FINISHED"
    assert cairn.get_run(bad_run.id)["info"]["status"] == "FAILED"


def test_end_is_idempotent_and_sets_end_time(fake):
    run = cairn.start_run(experiment="e")
    run.end()
    run.end()
    assert run.info["status"] == "FINISHED"
    assert len(fake.calls("/mlflow/runs/update")) == 1
    assert fake.calls("/mlflow/runs/update")[0][2]["end_time"] >= run.info["start_time"]
    with pytest.raises(CairnError) as e:
        run.log_param("a", 1)
    assert e.value.error_code == "INVALID_STATE"


def test_retries_503_and_429_then_succeeds(fake):
    fake.inject("/mlflow/runs/log-batch", 503, times=2)
    fake.inject("/mlflow/runs/set-tag", 429, times=1, headers={"Retry-After": "0"})
    with cairn.start_run(experiment="e") as run:
        run.log_param("a", 1)
        run.set_tag("t", "v")
    data = cairn.get_run(run.id)["data"]
    assert data["params"] == {"a": "1"}
    assert data["tags"]["t"] == "v"


def test_retries_are_bounded(fake):
    fake.inject("/mlflow/runs/get", 503, times=100)
    client = cairn.Client(fake.url, max_retries=2, backoff=0.01)
    with pytest.raises(CairnError) as e:
        client.get_run("abc")
    assert e.value.http_status == 503
    assert e.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert len(fake.calls("/mlflow/runs/get")) == 3


def test_server_error_codes_are_raised_as_cairn_error(fake):
    with cairn.start_run(experiment="e") as run:
        run.log_param("a", 1)
        with pytest.raises(CairnError) as e:
            run.log_param("a", 2)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        assert e.value.http_status == 400
    with pytest.raises(CairnError) as e:
        cairn.get_run("nope")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert e.value.http_status == 404


def test_background_error_surfaces_on_next_call(fake):
    run = cairn.start_run(experiment="e", flush_interval=60)
    fake.inject("/mlflow/runs/log-batch", 400, error_code="INVALID_PARAMETER_VALUE")
    run.log_metric("m", 1.0)
    with pytest.raises(CairnError) as e:
        run.flush()
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "1 metric(s) not logged" in e.value.message
    run.log_metric("m", 2.0)  # the error was reported once; logging goes on
    run.end()
    assert [m["value"] for m in cairn.get_metric_history(run.id, "m")] == [2.0]


def test_background_error_raised_by_next_log_call_and_at_end(fake):
    run = cairn.start_run(experiment="e", flush_interval=0.05)
    fake.inject("/mlflow/runs/log-batch", 400, error_code="INVALID_PARAMETER_VALUE")
    run.log_metric("m", 1.0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _batch_calls(fake):
        time.sleep(0.02)
    time.sleep(0.1)
    with pytest.raises(CairnError):
        run.log_metric("m", 2.0)
    # Error pending at end(): the run is marked FAILED and the error raised.
    fake.inject("/mlflow/runs/log-batch", 400, error_code="INVALID_PARAMETER_VALUE")
    run.log_metric("m", 3.0)
    with pytest.raises(CairnError):
        run.end()
    assert cairn.get_run(run.id)["info"]["status"] == "FAILED"


def test_invalid_metric_values_are_rejected_client_side(fake):
    with cairn.start_run(experiment="e") as run:
        with pytest.raises(CairnError) as e:
            run.log_metric("m", "abc")
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        with pytest.raises(CairnError):
            run.log_metric("m", 1.0, step=1.5)
        with pytest.raises(CairnError):
            run.log_metric("", 1.0)
        run.log_metric("nan", float("nan"))
    (call,) = [c for c in _batch_calls(fake) if c[2].get("metrics")]
    assert call[2]["metrics"][0]["value"] == "NaN"  # protobuf JSON mapping, not bare NaN


def test_experiment_create_race_is_tolerated(fake):
    # get-by-name says "missing", but create says "exists": another process won the race.
    state = {"n": 0}

    def get_by_name(method, query, body):
        state["n"] += 1
        if state["n"] == 1:
            with fake.lock:
                fake.experiments["7"] = {"experiment_id": "7", "name": "raced",
                                         "lifecycle_stage": "active"}
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "x"}
        return None

    fake.hooks["/api/2.0/mlflow/experiments/get-by-name"] = get_by_name
    with cairn.start_run(experiment="raced") as run:
        pass
    assert run.experiment_id == "7"
    assert len(fake.calls("/mlflow/experiments/create")) == 1


def test_existing_experiment_is_reused(fake):
    with cairn.start_run(experiment="same") as r1:
        pass
    with cairn.start_run(experiment="same") as r2:
        pass
    assert r1.experiment_id == r2.experiment_id
    assert len(fake.calls("/mlflow/experiments/create")) == 1


def test_artifact_upload_is_streamed_with_content_length(fake, tmp_path):
    big = tmp_path / "big.bin"
    payload = os.urandom(20 * 1024 * 1024)
    big.write_bytes(payload)
    sub = tmp_path / "d" / "e"
    sub.mkdir(parents=True)
    (sub / "x.txt").write_text("x")
    (tmp_path / "d" / "y.txt").write_text("yy")
    with cairn.start_run(experiment="e") as run:
        run.log_artifact(str(big), "models")
        run.log_artifacts(str(tmp_path / "d"), "tree")
        run.log_text("hello", "notes/hello.txt")
        run.log_dict({"a": 1}, "cfg.json")
    root = f"{run.experiment_id}/{run.id}/artifacts"
    put = [c for c in fake.calls("/mlflow-artifacts/artifacts/", "PUT") if c[1].endswith("big.bin")]
    assert put[0][1] == f"/api/2.0/mlflow-artifacts/artifacts/{root}/models/big.bin"
    assert put[0][3]["Content-Length"] == str(len(payload))
    assert "Transfer-Encoding" not in put[0][3]
    assert fake.artifacts[f"{root}/models/big.bin"] == payload
    assert fake.artifacts[f"{root}/tree/e/x.txt"] == b"x"
    assert fake.artifacts[f"{root}/tree/y.txt"] == b"yy"
    assert fake.artifacts[f"{root}/notes/hello.txt"] == b"hello"
    assert fake.artifacts[f"{root}/cfg.json"].decode().replace(" ", "").replace("\n", "") == '{"a":1}'

    listing = cairn.list_artifacts(run.id)
    assert [(e["path"], e["is_dir"]) for e in listing] == [
        ("cfg.json", False), ("models", True), ("notes", True), ("tree", True)]
    assert cairn.list_artifacts(run.id, "tree") == [
        {"path": "tree/e", "is_dir": True}, {"path": "tree/y.txt", "is_dir": False, "file_size": 2}]

    out = tmp_path / "out"
    local = cairn.download_artifact(run.id, "models/big.bin", str(out))
    assert open(local, "rb").read() == payload
    local_tree = cairn.download_artifact(run.id, "tree", str(out))
    assert open(os.path.join(local_tree, "e", "x.txt")).read() == "x"
    assert open(os.path.join(local_tree, "y.txt")).read() == "yy"


def test_artifact_paths_with_dotdot_are_rejected(fake, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("a")
    with cairn.start_run(experiment="e") as run:
        with pytest.raises(CairnError) as e:
            run.log_artifact(str(f), "../escape")
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_search_runs_follows_page_tokens_and_caps_results(fake):
    fake.search_page_size = 2
    ids = []
    for i in range(5):
        with cairn.start_run(experiment="paged") as run:
            ids.append(run.id)
    runs = cairn.search_runs(experiment_names=["paged"])
    assert sorted(r["info"]["run_id"] for r in runs) == sorted(ids)
    assert len(cairn.search_runs(experiment_names=["paged"], max_results=3)) == 3
    assert cairn.search_runs(experiment_names=["does-not-exist"]) == []
    body = fake.calls("/mlflow/runs/search")[0][2]
    assert body["run_view_type"] == "ACTIVE_ONLY"
    assert body["filter"] == ""


def test_stale_keep_alive_connection_is_reopened_without_duplicates(fake):
    client = cairn.Client(fake.url, max_retries=0)
    exp_id = client.create_experiment("stale")
    run = client.create_run(exp_id)
    fake.drop_connections = True
    for i in range(5):
        time.sleep(0.05)  # let the server's close reach us
        client.set_tag(run["info"]["run_id"], "k", str(i))
    assert len(fake.calls("/mlflow/runs/set-tag")) == 5
    assert client.get_run(run["info"]["run_id"])["data"]["tags"]["k"] == "4"


def test_connection_refused_raises_connection_error():
    client = cairn.Client("http://127.0.0.1:9", max_retries=1, backoff=0.01)
    with pytest.raises(CairnError) as e:
        client.get_run("x")
    assert e.value.error_code == "CONNECTION_ERROR"
    assert e.value.http_status is None


def test_tracking_uri_from_env(monkeypatch):
    monkeypatch.setattr(cairn, "_tracking_uri", None)
    monkeypatch.setattr(cairn, "_client", None)
    monkeypatch.delenv("CAIRN_URL", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:1234")
    assert cairn.get_tracking_uri() == "http://example.invalid:1234"
    monkeypatch.setenv("CAIRN_URL", "http://cairn.invalid:5")
    assert cairn.get_tracking_uri() == "http://cairn.invalid:5"
    assert cairn.get_client().tracking_uri == "http://cairn.invalid:5"
    with pytest.raises(CairnError):
        cairn.set_tracking_uri("file:///tmp/mlruns")


# --- MetricBatcher in isolation ----------------------------------------------


def test_batcher_preserves_order_across_threads_and_batches():
    sent = []
    b = _batching.MetricBatcher(lambda batch: sent.append(list(batch)), max_batch=7, interval=10)

    def producer(tag):
        for i in range(100):
            b.add([(tag, i)])

    threads = [threading.Thread(target=producer, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.close()
    flat = [m for batch in sent for m in batch]
    assert len(flat) == 300
    assert all(len(batch) <= 7 for batch in sent)
    for tag in "abc":
        assert [i for t, i in flat if t == tag] == list(range(100))


def test_batcher_backpressure_bounds_pending():
    release = threading.Event()
    max_seen = []

    def slow_send(batch):
        release.wait(5)

    b = _batching.MetricBatcher(slow_send, max_batch=10, interval=0.01, max_pending=20)

    def producer():
        for i in range(100):
            b.add([i])
            max_seen.append(b.pending)

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()  # blocked: the sender is stuck and the buffer is full
    release.set()
    t.join(5)
    assert not t.is_alive()
    b.close()
    assert max(max_seen) <= 20 + 10  # buffered + one in-flight batch


def test_batcher_flush_timeout():
    b = _batching.MetricBatcher(lambda batch: time.sleep(1), max_batch=10, interval=0.01)
    b.add([1])
    with pytest.raises(CairnError) as e:
        b.flush(timeout=0.1)
    assert e.value.error_code == "DEADLINE_EXCEEDED"
    b.close()
