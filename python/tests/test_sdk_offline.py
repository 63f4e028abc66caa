"""Offline mode (CAIRN_RECORD_FILE): runs append JSON lines to a file, never the network.

The C++ reader (src/pipeline/step_metrics.h, ParseSdkRecordFile) is tested
against src/pipeline/testdata/sdk_records.jsonl; test_fixture_matches_sdk_output
keeps that file identical to what this SDK writes. Regenerate it with
CAIRN_UPDATE_FIXTURES=1 /usr/bin/python3 -m pytest python/tests/test_sdk_offline.py
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import cairn
from cairn.errors import CairnError

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "src" / "pipeline" / "testdata" / "sdk_records.jsonl"


def _strict_json(line):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(line, parse_constant=refuse)


def read_records(path):
    text = Path(path).read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [_strict_json(line) for line in text.splitlines()]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """CAIRN_RECORD_FILE in a folder that does not exist yet; a server URI that refuses connections."""
    path = tmp_path / "out" / "_cairn" / "records.jsonl"
    monkeypatch.setenv("CAIRN_RECORD_FILE", str(path))
    monkeypatch.setenv("CAIRN_RUN_ID", "0123456789abcdef0123456789abcdef")
    monkeypatch.delenv("CAIRN_ARTIFACT_DIR", raising=False)
    cairn.set_tracking_uri("http://127.0.0.1:9")  # discard port: any network call would fail
    return path


def test_run_records_go_to_the_file_not_the_network(offline):
    with cairn.start_run(experiment="ignored", run_name="train", tags={"team": "vision"}) as run:
        assert run.id == "0123456789abcdef0123456789abcdef"
        run.log_param("lr", 0.1)
        run.log_params({"layers": 3})
        run.log_metric("loss", 0.5, step=2, timestamp=1700000000000)
        run.set_tag("stage", "warmup")
    assert read_records(offline) == [
        {"tag": "mlflow.runName", "value": "train"},
        {"tag": "team", "value": "vision"},
        {"param": "lr", "value": "0.1"},
        {"param": "layers", "value": "3"},
        {"metric": "loss", "value": 0.5, "step": 2, "timestamp": 1700000000000},
        {"tag": "stage", "value": "warmup"},
    ]
    assert run.info["status"] == "FINISHED"


def test_each_call_is_on_the_file_when_it_returns(offline):
    run = cairn.start_run()
    run.log_metric("acc", 0.25)
    recs = read_records(offline)
    assert len(recs) == 1 and recs[0]["metric"] == "acc" and recs[0]["step"] == 0
    assert isinstance(recs[0]["timestamp"], int) and recs[0]["timestamp"] > 1_600_000_000_000
    run.log_metrics({"a": 1, "b": 2}, step=5)
    recs = read_records(offline)
    assert [(r["metric"], r["value"], r["step"]) for r in recs[1:]] == [("a", 1.0, 5), ("b", 2.0, 5)]
    assert recs[1]["timestamp"] == recs[2]["timestamp"]
    run.end()


def test_non_finite_values_are_strings_and_the_file_stays_json(offline):
    with cairn.start_run() as run:
        run.log_metric("nan", float("nan"), timestamp=1)
        run.log_metric("inf", float("inf"), timestamp=1)
        run.log_metric("ninf", float("-inf"), timestamp=1)
    assert [r["value"] for r in read_records(offline)] == ["NaN", "Infinity", "-Infinity"]


def test_params_are_immutable_and_not_repeated(offline):
    with cairn.start_run() as run:
        run.log_param("lr", "0.1")
        run.log_param("lr", "0.1")  # same value: accepted, written once
        with pytest.raises(CairnError) as e:
            run.log_param("lr", "0.2")
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert read_records(offline) == [{"param": "lr", "value": "0.1"}]


@pytest.mark.parametrize("key", ["", "/abs", "a..b", "bad\nkey", "x" * 251, "a//b"])
def test_invalid_keys_are_refused_as_the_server_would(offline, key):
    with cairn.start_run() as run:
        with pytest.raises(CairnError) as e:
            run.log_metric(key, 1.0)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        with pytest.raises(CairnError):
            run.set_tag(key, "v")
    assert not offline.exists() or read_records(offline) == []


def test_metric_value_must_be_a_number(offline):
    with cairn.start_run() as run:
        with pytest.raises(CairnError):
            run.log_metric("loss", "high")
        run.log_metric("loss", 3, timestamp=7)  # ints are numbers
    assert read_records(offline) == [{"metric": "loss", "value": 3.0, "step": 0, "timestamp": 7}]


def test_logging_after_end_raises(offline):
    run = cairn.start_run()
    run.end()
    with pytest.raises(CairnError):
        run.log_metric("late", 1.0)
    with pytest.raises(CairnError):
        run.log_param("late", 1)


def test_concurrent_threads_write_whole_lines(offline):
    run = cairn.start_run()

    def worker(i):
        for s in range(300):
            run.log_metric(f"m{i}", float(s), step=s)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.end()
    recs = read_records(offline)
    assert len(recs) == 8 * 300
    for i in range(8):
        assert [r["step"] for r in recs if r["metric"] == f"m{i}"] == list(range(300))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_append_to_the_same_file(offline):
    run = cairn.start_run()
    run.log_metric("parent", 1.0, timestamp=1)
    pids = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                for s in range(100):
                    run.log_metric(f"child{i}", float(s), step=s, timestamp=1)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    run.end()
    recs = read_records(offline)
    assert len(recs) == 1 + 4 * 100
    for i in range(4):
        assert [r["step"] for r in recs if r["metric"] == f"child{i}"] == list(range(100))


def test_calls_that_need_a_server_raise_offline(offline):
    with pytest.raises(CairnError) as e:
        cairn.search_runs(experiment_names=["x"])
    assert e.value.error_code == "OFFLINE"
    with pytest.raises(CairnError):
        cairn.get_run("abc")
    with cairn.start_run() as run:
        assert run.log_dataset("tumours") is None  # the pipeline records inputs itself


def test_artifacts_are_copied_next_to_the_record_file(offline, tmp_path):
    src = tmp_path / "model.pkl"
    src.write_bytes(b"weights")
    with cairn.start_run() as run:
        run.log_artifact(str(src), artifact_path="models")
        run.log_text("hello", "notes/readme.txt")
        run.log_dict({"a": 1}, "config.json")
        assert run.list_artifacts() == [
            {"path": "config.json", "is_dir": False, "file_size": len(json.dumps({"a": 1}, indent=2))},
            {"path": "models", "is_dir": True},
            {"path": "notes", "is_dir": True},
        ]
        assert run.list_artifacts("models") == [{"path": "models/model.pkl", "is_dir": False, "file_size": 7}]
    art = offline.parent / "artifacts"
    assert (art / "models" / "model.pkl").read_bytes() == b"weights"
    assert (art / "notes" / "readme.txt").read_text() == "hello"
    with pytest.raises(CairnError):
        cairn.start_run().log_text("x", "../escape.txt")


def test_a_step_script_records_without_ending_its_run(tmp_path):
    """As a pipeline step uses it: a separate process, the run left open (atexit ends it)."""
    record = tmp_path / "out" / "_cairn" / "records.jsonl"
    script = tmp_path / "train.py"
    script.write_text(
        "import cairn\n"
        "run = cairn.start_run(run_name='step')\n"
        "for s in range(3):\n"
        "    run.log_metric('loss', 1.0 / (s + 1), step=s)\n"
        "run.log_params({'epochs': 3})\n"
    )
    env = dict(os.environ, CAIRN_RECORD_FILE=str(record), CAIRN_RUN_ID="feedface",
               PYTHONPATH=str(REPO / "python"), CAIRN_URL="http://127.0.0.1:9")
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=60)
    recs = read_records(record)
    assert recs[0] == {"tag": "mlflow.runName", "value": "step"}
    assert [r["value"] for r in recs if r.get("metric") == "loss"] == [1.0, 0.5, 1.0 / 3]
    assert recs[-1] == {"param": "epochs", "value": "3"}


def write_fixture(path, monkeypatch):
    """The fixed sequence whose output is committed as the C++ test's fixture."""
    monkeypatch.setenv("CAIRN_RECORD_FILE", str(path))
    with cairn.start_run(run_name="fixture", tags={"team": "vision"}) as run:
        run.log_param("lr", 0.1)
        run.log_params({"layers": 3, "optimizer": {"name": "adam", "beta": 0.9}})
        run.log_metric("loss", 0.5, step=0, timestamp=1700000000000)
        run.log_metrics({"acc": 0.75, "val/f1 score": 0.5}, step=1, timestamp=1700000000001)
        run.log_metric("loss", float("nan"), step=2, timestamp=1700000000002)
        run.log_metric("grad_norm", float("inf"), step=2, timestamp=1700000000002)
        run.log_metric("throughput", 12, step=-1, timestamp=1700000000003)
        run.set_tag("stage", "train")
        run.set_tags({"note": "caf\u00e9 \"quoted\"", "count": 2})


def test_fixture_matches_sdk_output(offline, tmp_path, monkeypatch):
    out = tmp_path / "fixture.jsonl"
    write_fixture(out, monkeypatch)
    produced = out.read_text(encoding="utf-8")
    if os.environ.get("CAIRN_UPDATE_FIXTURES") == "1":
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(produced, encoding="utf-8")
    assert FIXTURE.read_text(encoding="utf-8") == produced, (
        "the SDK's record format changed: update the C++ reader and regenerate the fixture "
        "(CAIRN_UPDATE_FIXTURES=1)")


def test_online_mode_is_unchanged_without_the_variable(monkeypatch):
    monkeypatch.delenv("CAIRN_RECORD_FILE", raising=False)
    cairn.set_tracking_uri("http://127.0.0.1:9")
    client = cairn.get_client()
    assert not getattr(client, "offline", False)
    assert client.tracking_uri == "http://127.0.0.1:9"
