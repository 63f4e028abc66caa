"""End-to-end tests of the Python SDK against the real `cairn server` binary."""

import hashlib
import math
import os
import threading

import pytest

from cairn import CairnError


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_full_run_lifecycle(tracking, exp_name, tmp_path):
    cairn = tracking
    (tmp_path / "src" / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / "src" / "top.txt").write_text("top")
    (tmp_path / "src" / "nested" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "src" / "nested" / "deeper" / "b.bin").write_bytes(bytes(range(256)))
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04fake-pickle")

    with cairn.start_run(experiment=exp_name, run_name="lifecycle", tags={"team": "ml"}) as run:
        assert run.info["status"] == "RUNNING"
        run.log_param("lr", 0.01)
        run.log_params({"epochs": 3, "model": "rf"})
        run.log_param("lr", 0.01)  # same value again: idempotent
        run.set_tag("stage", "dev")
        for step in range(10):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"acc": 0.9, "f1": 0.8})
        run.log_artifact(str(tmp_path / "model.pkl"))
        run.log_artifact(str(tmp_path / "model.pkl"), artifact_path="models/v1")
        run.log_artifacts(str(tmp_path / "src"), artifact_path="data")
        run.log_text("hello\n", "notes/readme.txt")
        run.log_dict({"classes": [0, 1, 2]}, "meta/labels.json")

    got = cairn.get_run(run.id)
    info, data = got["info"], got["data"]
    assert info["run_id"] == run.id
    assert info["status"] == "FINISHED"
    assert info["run_name"] == "lifecycle"
    assert info["lifecycle_stage"] == "active"
    assert info["end_time"] >= info["start_time"] > 1_600_000_000_000
    assert info["artifact_uri"] == f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts"
    assert data["params"] == {"lr": "0.01", "epochs": "3", "model": "rf"}
    assert data["tags"]["team"] == "ml"
    assert data["tags"]["stage"] == "dev"
    assert data["tags"]["mlflow.user"]
    assert data["tags"]["mlflow.source.name"]
    assert data["metrics"]["loss"] == pytest.approx(0.1)  # latest = highest step
    assert data["metrics"]["acc"] == pytest.approx(0.9)
    assert data["metrics"]["f1"] == pytest.approx(0.8)

    hist = cairn.get_metric_history(run.id, "loss")
    assert sorted(m["step"] for m in hist) == list(range(10))
    for m in hist:
        assert m["value"] == pytest.approx(1.0 / (m["step"] + 1))
        assert m["key"] == "loss"
        assert m["timestamp"] > 1_600_000_000_000

    root = cairn.list_artifacts(run.id)
    assert [(e["path"], e["is_dir"]) for e in root] == [
        ("data", True), ("meta", True), ("model.pkl", False), ("models", True), ("notes", True)]
    assert [e for e in root if e["path"] == "model.pkl"][0]["file_size"] == 13
    nested = cairn.list_artifacts(run.id, "data/nested")
    assert [(e["path"], e["is_dir"]) for e in nested] == [
        ("data/nested/a.csv", False), ("data/nested/deeper", True)]
    assert cairn.list_artifacts(run.id, "models/v1")[0]["path"] == "models/v1/model.pkl"

    out = tmp_path / "out"
    local = cairn.download_artifact(run.id, "data", str(out))
    assert open(os.path.join(local, "top.txt")).read() == "top"
    assert open(os.path.join(local, "nested", "a.csv")).read() == "x,y\n1,2\n"
    assert open(os.path.join(local, "nested", "deeper", "b.bin"), "rb").read() == bytes(range(256))
    local = cairn.download_artifact(run.id, "notes/readme.txt", str(out))
    assert open(local).read() == "hello\n"
    import json

    local = cairn.download_artifact(run.id, "meta/labels.json", str(out))
    assert json.load(open(local)) == {"classes": [0, 1, 2]}


def test_exception_marks_run_failed(tracking, exp_name):
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.start_run(experiment=exp_name) as run:
            run.log_metric("m", 1.0)
            raise RuntimeError("boom")
    got = tracking.get_run(run.id)
    assert got["info"]["status"] == "FAILED"
    assert got["data"]["metrics"]["m"] == 1.0  # metrics were flushed before ending


def test_keyboard_interrupt_marks_run_killed(tracking, exp_name):
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run(experiment=exp_name) as run:
            raise KeyboardInterrupt()
    assert tracking.get_run(run.id)["info"]["status"] == "KILLED"


def test_5000_background_metrics_arrive_complete_and_in_order(tracking, exp_name):
    n = 5000
    with tracking.start_run(experiment=exp_name) as run:
        for i in range(n):
            run.log_metric("loss", math.exp(-i / 1000), step=i)
            if i % 2 == 0:
                run.log_metric("even", float(i), step=i)
    hist = tracking.get_metric_history(run.id, "loss")
    assert len(hist) == n
    by_step = sorted(hist, key=lambda m: m["step"])
    assert [m["step"] for m in by_step] == list(range(n))
    for m in by_step[::250]:
        assert m["value"] == pytest.approx(math.exp(-m["step"] / 1000))
    # Timestamps were taken at log time, so they never go backwards with the step.
    ts = [m["timestamp"] for m in by_step]
    assert ts == sorted(ts)
    assert len(tracking.get_metric_history(run.id, "even")) == n // 2
    latest = tracking.get_run(run.id)["data"]["metrics"]
    assert latest["loss"] == pytest.approx(math.exp(-(n - 1) / 1000))
    assert latest["even"] == float(n - 2)


def test_metric_history_with_repeated_steps_and_explicit_timestamps(tracking, exp_name):
    with tracking.start_run(experiment=exp_name) as run:
        run.log_metric("acc", 0.1, step=0, timestamp=1_700_000_000_000)
        run.log_metric("acc", 0.2, step=1, timestamp=1_700_000_000_500)
        run.log_metric("acc", 0.25, step=1, timestamp=1_700_000_001_000)
        run.log_metric("acc", -1.5, step=2, timestamp=1_700_000_002_000)
    hist = tracking.get_metric_history(run.id, "acc")
    assert sorted((m["step"], m["timestamp"], m["value"]) for m in hist) == [
        (0, 1_700_000_000_000, 0.1),
        (1, 1_700_000_000_500, 0.2),
        (1, 1_700_000_001_000, 0.25),
        (2, 1_700_000_002_000, -1.5),
    ]
    assert tracking.get_metric_history(run.id, "never-logged") == []
    assert tracking.get_run(run.id)["data"]["metrics"]["acc"] == -1.5


def test_search_runs_filter_and_order(tracking, exp_name):
    specs = [("rf", 0.91), ("rf", 0.85), ("logreg", 0.88), ("rf", 0.95), ("logreg", 0.70)]
    ids = {}
    for model, acc in specs:
        with tracking.start_run(experiment=exp_name) as run:
            run.log_param("model", model)
            run.log_metric("acc", acc)
        ids[acc] = run.id

    rf = tracking.search_runs(experiment_names=[exp_name], filter_string="params.model = 'rf'",
                              order_by=["metrics.acc DESC"])
    assert [r["info"]["run_id"] for r in rf] == [ids[0.95], ids[0.91], ids[0.85]]
    assert [r["data"]["metrics"]["acc"] for r in rf] == [0.95, 0.91, 0.85]

    good = tracking.search_runs(experiment_names=[exp_name], filter_string="metrics.acc > 0.87",
                                order_by=["metrics.acc ASC"])
    assert [r["data"]["metrics"]["acc"] for r in good] == [0.88, 0.91, 0.95]

    top = tracking.search_runs(experiment_names=[exp_name], order_by=["metrics.acc DESC"],
                               max_results=2)
    assert [r["info"]["run_id"] for r in top] == [ids[0.95], ids[0.91]]

    exp_id = top[0]["info"]["experiment_id"]
    both = tracking.search_runs(
        experiment_ids=[exp_id],
        filter_string="params.model = 'logreg' and metrics.acc < 0.8")
    assert [r["info"]["run_id"] for r in both] == [ids[0.70]]

    finished = tracking.search_runs(experiment_ids=[exp_id],
                                    filter_string="attributes.status = 'FINISHED'")
    assert len(finished) == 5


def test_large_artifact_round_trip(tracking, exp_name, tmp_path):
    src = tmp_path / "blob.bin"
    with open(src, "wb") as f:
        for i in range(20):
            f.write(hashlib.sha256(str(i).encode()).digest() * (1024 * 1024 // 32))
    assert src.stat().st_size == 20 * 1024 * 1024
    with tracking.start_run(experiment=exp_name) as run:
        run.log_artifact(str(src), artifact_path="big")
    listing = tracking.list_artifacts(run.id, "big")
    assert listing == [{"path": "big/blob.bin", "is_dir": False, "file_size": 20 * 1024 * 1024}]
    local = tracking.download_artifact(run.id, "big/blob.bin", str(tmp_path / "dl"))
    assert os.path.getsize(local) == 20 * 1024 * 1024
    assert _sha256(local) == _sha256(src)


def test_changing_a_param_raises_invalid_parameter_value(tracking, exp_name):
    with tracking.start_run(experiment=exp_name) as run:
        run.log_param("lr", 0.1)
        with pytest.raises(CairnError) as e:
            run.log_param("lr", 0.2)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        assert e.value.http_status == 400
    assert tracking.get_run(run.id)["data"]["params"] == {"lr": "0.1"}


def test_unknown_run_raises_resource_does_not_exist(tracking):
    with pytest.raises(CairnError) as e:
        tracking.get_run("0123456789abcdef0123456789abcdef")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert e.value.http_status == 404
    with pytest.raises(CairnError) as e:
        tracking.get_metric_history("0123456789abcdef0123456789abcdef", "loss")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_concurrent_start_run_creates_experiment_once(tracking, exp_name):
    results, errors = [], []
    barrier = threading.Barrier(4)

    def worker():
        try:
            barrier.wait()
            with tracking.start_run(experiment=exp_name) as run:
                results.append(run.experiment_id)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1
    assert len(tracking.search_runs(experiment_names=[exp_name])) == 4
