"""Runs record the dataset commits they read; the dataset side lists those runs."""

import json
import subprocess
import urllib.request

from conftest import server_binary


def _cli(server, *args):
    out = subprocess.run([str(server_binary()), "--url", server.url, *args, "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _get(server, path):
    with urllib.request.urlopen(server.url + path, timeout=30) as r:
        return json.loads(r.read())


def test_run_logs_a_dataset_commit_and_the_commit_lists_the_run(cairn_server, tracking, exp_name, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "a.csv").write_text("x,y\n1,2\n3,4\n")
    (tmp_path / "test" / "b.csv").write_text("x,y\n5,6\n")
    name = "sdk-" + exp_name.replace("_", "-")[-20:]
    _cli(cairn_server, "data", "create", name)
    added = _cli(cairn_server, "data", "add", name, str(tmp_path), "-m", "v1",
                 "--split", "train=train/**", "--split", "test=test/**", "--seal", "test")
    assert added["created"] is True

    with tracking.start_run(experiment=exp_name) as run:
        commit = run.log_dataset(name, ref="main", context="training", split="train")
        run.log_dataset(name, ref=commit["id"], context="evaluation", split="test")
    assert commit["id"] == added["commit"]
    assert {s["name"]: s["sealed"] for s in commit["splits"]} == {"test": True, "train": False}

    got = tracking.get_run(run.id)
    inputs = got["inputs"].get("dataset_inputs", [])
    assert [i["dataset"]["digest"] for i in inputs] == [commit["id"], commit["id"]]
    assert sorted(i["dataset"]["source"] for i in inputs) == [f"cairn:{name}@{commit['id']}#test",
                                                              f"cairn:{name}@{commit['id']}#train"]

    shown = _get(cairn_server, f"/api/cairn/v1/commits/{commit['id']}")
    assert sorted((r["run_id"], r["dataset"], r["context"]) for r in shown["runs"]) == [
        (run.id, f"{name}#test", "evaluation"), (run.id, f"{name}#train", "training")]
    assert shown["profiles"]["train/a.csv"]["rows"] == 2
