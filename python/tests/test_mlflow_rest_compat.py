"""MLflow REST API 2.0 compatibility: raw HTTP requests shaped exactly like the `mlflow` client's.

The mlflow package cannot be installed here, so these tests reproduce what
mlflow.store.tracking.rest_store.RestStore and
mlflow.store.artifact.http_artifact_repo.HttpArtifactRepository send:
- endpoint paths and methods from mlflow/protos/service.proto;
- GET requests carry the request message as URL parameters (requests'
  `params=`: repeated fields become repeated keys), others a JSON body;
- run-scoped requests send both `run_id` and the legacy `run_uuid`;
- artifacts go through the mlflow-artifacts proxy (PUT/GET on
  /api/2.0/mlflow-artifacts/artifacts/<exp>/<run>/artifacts/<path>, list with
  GET ?path=...).
Responses are checked field by field the way mlflow's entities read them
(int64 fields may come back as JSON numbers or strings, as protobuf's JSON
mapping allows; mlflow accepts both).
"""

import http.client
import json
import math
import time
import urllib.parse
import uuid

import pytest

MLFLOW_HEADERS = {"User-Agent": "mlflow-python-client/2.16.0"}


class Rest:
    """Sends requests the way mlflow.utils.rest_utils.call_endpoint does."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            h = dict(MLFLOW_HEADERS)
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp
        finally:
            conn.close()

    def call(self, method, endpoint, message=None):
        path = "/api/2.0" + endpoint
        if method == "GET":
            items = []
            for k, v in (message or {}).items():
                for x in v if isinstance(v, list) else [v]:
                    items.append((k, str(x)))
            if items:
                path += "?" + urllib.parse.urlencode(items)
            status, data, _ = self.request("GET", path)
        else:
            status, data, _ = self.request(
                method, path, json.dumps(message or {}).encode(),
                {"Content-Type": "application/json"})
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            pytest.fail(f"{method} {endpoint} -> {status}: body is not JSON: {data[:300]!r}")
        return status, parsed

    def ok(self, method, endpoint, message=None):
        status, body = self.call(method, endpoint, message)
        assert status == 200, f"{method} {endpoint} -> {status} {body}"
        assert isinstance(body, dict)
        return body

    def error(self, method, endpoint, message, http_status, error_code):
        status, body = self.call(method, endpoint, message)
        assert (status, body.get("error_code")) == (http_status, error_code), (
            f"{method} {endpoint}: expected {http_status} {error_code}, got {status} {body}")
        assert isinstance(body.get("message"), str) and body["message"]
        return body


@pytest.fixture
def rest(cairn_server):
    return Rest(cairn_server.url)


def _now():
    return int(time.time() * 1000)


def _tags(entity):
    return {t["key"]: t.get("value", "") for t in entity.get("tags", [])}


def _new_experiment(rest, tags=None):
    name = f"compat-{uuid.uuid4().hex[:10]}"
    body = {"name": name}
    if tags:
        body["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    exp_id = rest.ok("POST", "/mlflow/experiments/create", body)["experiment_id"]
    assert isinstance(exp_id, str) and exp_id
    return exp_id, name


def _new_run(rest, exp_id, run_name="compat-run", tags=None):
    # Tags set by mlflow.start_run's default context providers.
    all_tags = {"mlflow.user": "tester", "mlflow.source.name": "/tmp/train.py",
                "mlflow.source.type": "LOCAL"}
    all_tags.update(tags or {})
    body = {
        "experiment_id": exp_id,
        "user_id": "tester",
        "start_time": _now(),
        "tags": [{"key": k, "value": v} for k, v in all_tags.items()],
        "run_name": run_name,
    }
    return rest.ok("POST", "/mlflow/runs/create", body)["run"]


def _get_run(rest, run_id):
    return rest.ok("GET", "/mlflow/runs/get", {"run_uuid": run_id, "run_id": run_id})["run"]


# --- experiments ------------------------------------------------------------------


def test_default_experiment_exists(rest):
    # mlflow.start_run() without set_experiment() logs to experiment "0".
    exp = rest.ok("GET", "/mlflow/experiments/get", {"experiment_id": "0"})["experiment"]
    assert exp["experiment_id"] == "0"
    assert exp["name"] == "Default"


def test_experiment_crud_and_tags(rest):
    exp_id, name = _new_experiment(rest, tags={"owner": "alice"})

    exp = rest.ok("GET", "/mlflow/experiments/get", {"experiment_id": exp_id})["experiment"]
    assert exp["experiment_id"] == exp_id
    assert exp["name"] == name
    assert exp["lifecycle_stage"] == "active"
    assert exp["artifact_location"]
    assert int(exp["creation_time"]) > 1_600_000_000_000
    assert int(exp["last_update_time"]) >= int(exp["creation_time"])
    assert _tags(exp) == {"owner": "alice"}

    by_name = rest.ok("GET", "/mlflow/experiments/get-by-name", {"experiment_name": name})
    assert by_name["experiment"]["experiment_id"] == exp_id

    rest.error("POST", "/mlflow/experiments/create", {"name": name}, 400, "RESOURCE_ALREADY_EXISTS")
    rest.error("POST", "/mlflow/experiments/create", {}, 400, "INVALID_PARAMETER_VALUE")
    rest.error("GET", "/mlflow/experiments/get-by-name", {"experiment_name": name + "-nope"},
               404, "RESOURCE_DOES_NOT_EXIST")
    rest.error("GET", "/mlflow/experiments/get", {"experiment_id": "987654321"},
               404, "RESOURCE_DOES_NOT_EXIST")

    assert rest.ok("POST", "/mlflow/experiments/set-experiment-tag",
                   {"experiment_id": exp_id, "key": "stage", "value": "dev"}) == {}
    rest.ok("POST", "/mlflow/experiments/set-experiment-tag",
            {"experiment_id": exp_id, "key": "owner", "value": "bob"})
    exp = rest.ok("GET", "/mlflow/experiments/get", {"experiment_id": exp_id})["experiment"]
    assert _tags(exp) == {"owner": "bob", "stage": "dev"}
    rest.ok("POST", "/mlflow/experiments/delete-experiment-tag", {"experiment_id": exp_id, "key": "stage"})
    exp = rest.ok("GET", "/mlflow/experiments/get", {"experiment_id": exp_id})["experiment"]
    assert _tags(exp) == {"owner": "bob"}

    new_name = name + "-renamed"
    rest.ok("POST", "/mlflow/experiments/update", {"experiment_id": exp_id, "new_name": new_name})
    assert rest.ok("GET", "/mlflow/experiments/get-by-name",
                   {"experiment_name": new_name})["experiment"]["experiment_id"] == exp_id
    rest.error("GET", "/mlflow/experiments/get-by-name", {"experiment_name": name},
               404, "RESOURCE_DOES_NOT_EXIST")

    found = rest.ok("POST", "/mlflow/experiments/search",
                    {"max_results": 10, "filter": f"name = '{new_name}'", "view_type": "ACTIVE_ONLY"})
    assert [e["experiment_id"] for e in found["experiments"]] == [exp_id]

    rest.ok("POST", "/mlflow/experiments/delete", {"experiment_id": exp_id})
    exp = rest.ok("GET", "/mlflow/experiments/get", {"experiment_id": exp_id})["experiment"]
    assert exp["lifecycle_stage"] == "deleted"
    active = rest.ok("POST", "/mlflow/experiments/search",
                     {"max_results": 1000, "filter": f"name = '{new_name}'", "view_type": "ACTIVE_ONLY"})
    assert active.get("experiments", []) == []
    deleted = rest.ok("POST", "/mlflow/experiments/search",
                      {"max_results": 1000, "filter": f"name = '{new_name}'", "view_type": "DELETED_ONLY"})
    assert [e["experiment_id"] for e in deleted["experiments"]] == [exp_id]

    rest.ok("POST", "/mlflow/experiments/restore", {"experiment_id": exp_id})
    exp = rest.ok("GET", "/mlflow/experiments/get", {"experiment_id": exp_id})["experiment"]
    assert exp["lifecycle_stage"] == "active"


def test_search_experiments_pagination(rest):
    prefix = f"page-{uuid.uuid4().hex[:8]}"
    ids = set()
    for i in range(5):
        ids.add(rest.ok("POST", "/mlflow/experiments/create", {"name": f"{prefix}-{i}"})["experiment_id"])
    seen, token = [], None
    for _ in range(10):
        body = {"max_results": 2, "filter": f"name LIKE '{prefix}-%'", "view_type": "ACTIVE_ONLY"}
        if token:
            body["page_token"] = token
        page = rest.ok("POST", "/mlflow/experiments/search", body)
        assert len(page.get("experiments", [])) <= 2
        seen += [e["experiment_id"] for e in page.get("experiments", [])]
        token = page.get("next_page_token")
        if not token:
            break
    assert sorted(seen) == sorted(ids)


# --- runs -----------------------------------------------------------------------


def test_run_crud(rest):
    exp_id, _ = _new_experiment(rest)
    run = _new_run(rest, exp_id, run_name="first", tags={"team": "ml"})
    info = run["info"]
    run_id = info["run_id"]
    assert info.get("run_uuid", run_id) == run_id
    assert info["experiment_id"] == exp_id
    assert info["run_name"] == "first"
    assert info["user_id"] == "tester"
    assert info["status"] == "RUNNING"
    assert info["lifecycle_stage"] == "active"
    assert int(info["start_time"]) > 1_600_000_000_000
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"
    tags = _tags(run["data"])
    assert tags["team"] == "ml"
    assert tags["mlflow.user"] == "tester"
    assert tags["mlflow.runName"] == "first"  # the server records run_name as this tag, like MLflow

    # Older clients send only run_uuid; newer ones only run_id.
    assert rest.ok("GET", "/mlflow/runs/get", {"run_uuid": run_id})["run"]["info"]["run_id"] == run_id
    assert rest.ok("GET", "/mlflow/runs/get", {"run_id": run_id})["run"]["info"]["run_id"] == run_id
    rest.error("GET", "/mlflow/runs/get", {"run_id": uuid.uuid4().hex, "run_uuid": uuid.uuid4().hex},
               404, "RESOURCE_DOES_NOT_EXIST")

    end = _now()
    upd = rest.ok("POST", "/mlflow/runs/update",
                  {"run_uuid": run_id, "run_id": run_id, "status": "FINISHED", "end_time": end})
    assert upd["run_info"]["status"] == "FINISHED"
    assert int(upd["run_info"]["end_time"]) == end
    rest.ok("POST", "/mlflow/runs/update", {"run_uuid": run_id, "run_id": run_id, "run_name": "renamed"})
    got = _get_run(rest, run_id)
    assert got["info"]["run_name"] == "renamed"
    assert got["info"]["status"] == "FINISHED"
    assert _tags(got["data"])["mlflow.runName"] == "renamed"

    rest.ok("POST", "/mlflow/runs/delete", {"run_id": run_id})
    assert _get_run(rest, run_id)["info"]["lifecycle_stage"] == "deleted"
    rest.ok("POST", "/mlflow/runs/restore", {"run_id": run_id})
    assert _get_run(rest, run_id)["info"]["lifecycle_stage"] == "active"


def test_single_value_logging_endpoints(rest):
    exp_id, _ = _new_experiment(rest)
    run_id = _new_run(rest, exp_id)["info"]["run_id"]
    ts = _now()
    assert rest.ok("POST", "/mlflow/runs/log-metric",
                   {"run_uuid": run_id, "run_id": run_id, "key": "loss", "value": 0.5,
                    "timestamp": ts, "step": 3}) == {}
    assert rest.ok("POST", "/mlflow/runs/log-parameter",
                   {"run_uuid": run_id, "run_id": run_id, "key": "lr", "value": "0.01"}) == {}
    rest.ok("POST", "/mlflow/runs/log-parameter",
            {"run_uuid": run_id, "run_id": run_id, "key": "lr", "value": "0.01"})  # idempotent
    rest.error("POST", "/mlflow/runs/log-parameter",
               {"run_uuid": run_id, "run_id": run_id, "key": "lr", "value": "0.02"},
               400, "INVALID_PARAMETER_VALUE")
    assert rest.ok("POST", "/mlflow/runs/set-tag",
                   {"run_uuid": run_id, "run_id": run_id, "key": "note", "value": "v1"}) == {}
    rest.ok("POST", "/mlflow/runs/set-tag", {"run_uuid": run_id, "run_id": run_id, "key": "note", "value": "v2"})
    rest.ok("POST", "/mlflow/runs/set-tag", {"run_uuid": run_id, "run_id": run_id, "key": "gone", "value": "x"})
    assert rest.ok("POST", "/mlflow/runs/delete-tag", {"run_id": run_id, "key": "gone"}) == {}
    rest.error("POST", "/mlflow/runs/delete-tag", {"run_id": run_id, "key": "never-set"},
               404, "RESOURCE_DOES_NOT_EXIST")

    data = _get_run(rest, run_id)["data"]
    (metric,) = data["metrics"]
    assert metric["key"] == "loss" and metric["value"] == 0.5
    assert int(metric["timestamp"]) == ts and int(metric["step"]) == 3
    assert data["params"] == [{"key": "lr", "value": "0.01"}]
    tags = _tags(data)
    assert tags["note"] == "v2"
    assert "gone" not in tags


def test_log_batch_and_metric_history(rest):
    exp_id, _ = _new_experiment(rest)
    run_id = _new_run(rest, exp_id)["info"]["run_id"]
    ts = _now()
    metrics = [{"key": "acc", "value": 0.1 * i, "timestamp": ts + i, "step": i} for i in range(10)]
    metrics.append({"key": "f1", "value": 0.7, "timestamp": ts, "step": 0})
    assert rest.ok("POST", "/mlflow/runs/log-batch", {
        "run_id": run_id,
        "metrics": metrics,
        "params": [{"key": "model", "value": "rf"}, {"key": "depth", "value": "4"}],
        "tags": [{"key": "phase", "value": "train"}],
    }) == {}

    data = _get_run(rest, run_id)["data"]
    latest = {m["key"]: m for m in data["metrics"]}
    assert latest["acc"]["value"] == pytest.approx(0.9)
    assert int(latest["acc"]["step"]) == 9
    assert latest["f1"]["value"] == 0.7
    assert {p["key"]: p["value"] for p in data["params"]} == {"model": "rf", "depth": "4"}
    assert _tags(data)["phase"] == "train"

    hist = rest.ok("GET", "/mlflow/metrics/get-history",
                   {"run_uuid": run_id, "run_id": run_id, "metric_key": "acc"})["metrics"]
    assert sorted((int(m["step"]), int(m["timestamp"]), m["value"]) for m in hist) == [
        (i, ts + i, pytest.approx(0.1 * i)) for i in range(10)]
    assert all(m["key"] == "acc" for m in hist)
    empty = rest.ok("GET", "/mlflow/metrics/get-history",
                    {"run_uuid": run_id, "run_id": run_id, "metric_key": "nothing"})
    assert empty.get("metrics", []) == []

    # protobuf's JSON mapping (used by mlflow's message_to_json) sends non-finite doubles as strings.
    rest.ok("POST", "/mlflow/runs/log-batch", {"run_id": run_id, "metrics": [
        {"key": "weird", "value": "NaN", "timestamp": ts, "step": 0},
        {"key": "weird", "value": "Infinity", "timestamp": ts, "step": 1},
        {"key": "weird", "value": "-Infinity", "timestamp": ts, "step": 2}]})
    weird = rest.ok("GET", "/mlflow/metrics/get-history",
                    {"run_uuid": run_id, "run_id": run_id, "metric_key": "weird"})["metrics"]
    values = [float(m["value"]) for m in sorted(weird, key=lambda m: int(m["step"]))]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]

    # Params are immutable; the error names the conflict.
    rest.error("POST", "/mlflow/runs/log-batch",
               {"run_id": run_id, "params": [{"key": "model", "value": "gbt"}]},
               400, "INVALID_PARAMETER_VALUE")
    # Request limits from service.proto: at most 1000 metrics per batch.
    too_many = [{"key": "m", "value": 1.0, "timestamp": ts, "step": i} for i in range(1001)]
    rest.error("POST", "/mlflow/runs/log-batch", {"run_id": run_id, "metrics": too_many},
               400, "INVALID_PARAMETER_VALUE")
    rest.error("POST", "/mlflow/runs/log-batch",
               {"run_id": uuid.uuid4().hex, "metrics": metrics[:1]}, 404, "RESOURCE_DOES_NOT_EXIST")
    # Logging to a deleted run is refused.
    rest.ok("POST", "/mlflow/runs/delete", {"run_id": run_id})
    rest.error("POST", "/mlflow/runs/log-batch", {"run_id": run_id, "metrics": metrics[:1]},
               400, "INVALID_PARAMETER_VALUE")


def test_search_runs(rest):
    exp_id, _ = _new_experiment(rest)
    other_exp, _ = _new_experiment(rest)
    ids = {}
    for i, (model, acc) in enumerate([("rf", 0.9), ("lr", 0.8), ("rf", 0.7), ("gbt", 0.95)]):
        run_id = _new_run(rest, exp_id, run_name=f"r{i}")["info"]["run_id"]
        rest.ok("POST", "/mlflow/runs/log-batch", {
            "run_id": run_id,
            "metrics": [{"key": "acc", "value": acc, "timestamp": _now(), "step": 0}],
            "params": [{"key": "model", "value": model}],
            "tags": [{"key": "idx", "value": str(i)}],
        })
        rest.ok("POST", "/mlflow/runs/update",
                {"run_uuid": run_id, "run_id": run_id, "status": "FINISHED", "end_time": _now()})
        ids[model, acc] = run_id
    other = _new_run(rest, other_exp)["info"]["run_id"]

    def search(**kw):
        body = {"experiment_ids": kw.pop("experiment_ids", [exp_id]), "filter": "",
                "run_view_type": "ACTIVE_ONLY", "max_results": 1000, "order_by": []}
        body.update(kw)
        return rest.ok("POST", "/mlflow/runs/search", body)

    res = search(filter="params.model = 'rf'", order_by=["metrics.acc DESC"])
    assert [r["info"]["run_id"] for r in res["runs"]] == [ids["rf", 0.9], ids["rf", 0.7]]
    assert not res.get("next_page_token")

    res = search(filter="metrics.acc >= 0.8 and tags.idx != '3'", order_by=["metrics.acc ASC"])
    assert [r["info"]["run_id"] for r in res["runs"]] == [ids["lr", 0.8], ids["rf", 0.9]]

    res = search(filter="attributes.run_name = 'r1'")
    assert [r["info"]["run_id"] for r in res["runs"]] == [ids["lr", 0.8]]

    both = search(experiment_ids=[exp_id, other_exp])
    assert len(both["runs"]) == 5
    assert other in {r["info"]["run_id"] for r in both["runs"]}

    # Pagination: page tokens until exhausted, no duplicates, same order as one big page.
    full = [r["info"]["run_id"] for r in search(order_by=["metrics.acc DESC"])["runs"]]
    paged, token = [], None
    for _ in range(10):
        kw = {"max_results": 3, "order_by": ["metrics.acc DESC"]}
        if token:
            kw["page_token"] = token
        page = search(**kw)
        assert len(page.get("runs", [])) <= 3
        paged += [r["info"]["run_id"] for r in page.get("runs", [])]
        token = page.get("next_page_token")
        if not token:
            break
    assert paged == full == [ids["gbt", 0.95], ids["rf", 0.9], ids["lr", 0.8], ids["rf", 0.7]]

    # Deleted runs only show up with the matching run_view_type.
    rest.ok("POST", "/mlflow/runs/delete", {"run_id": ids["gbt", 0.95]})
    assert ids["gbt", 0.95] not in {r["info"]["run_id"] for r in search()["runs"]}
    deleted = search(run_view_type="DELETED_ONLY")["runs"]
    assert [r["info"]["run_id"] for r in deleted] == [ids["gbt", 0.95]]
    assert len(search(run_view_type="ALL")["runs"]) == 4

    # A malformed filter is the caller's error.
    status, body = rest.call("POST", "/mlflow/runs/search",
                             {"experiment_ids": [exp_id], "filter": "metrics.acc >>> 1"})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body


def test_log_inputs(rest):
    exp_id, _ = _new_experiment(rest)
    run_id = _new_run(rest, exp_id)["info"]["run_id"]
    dataset = {
        "name": "wine",
        "digest": "d4c2b7a1",
        "source_type": "local",
        "source": json.dumps({"uri": "/data/wine.csv"}),
        "schema": json.dumps({"mlflow_colspec": [{"type": "double", "name": "alcohol"}]}),
        "profile": json.dumps({"num_rows": 178}),
    }
    assert rest.ok("POST", "/mlflow/runs/log-inputs", {
        "run_id": run_id,
        "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}],
                      "dataset": dataset}],
    }) == {}
    inputs = _get_run(rest, run_id)["inputs"]["dataset_inputs"]
    assert len(inputs) == 1
    assert inputs[0]["dataset"] == dataset
    assert inputs[0]["tags"] == [{"key": "mlflow.data.context", "value": "training"}]


def test_artifacts_via_proxy_and_list(rest):
    exp_id, _ = _new_experiment(rest)
    run = _new_run(rest, exp_id)
    run_id = run["info"]["run_id"]
    # HttpArtifactRepository resolves mlflow-artifacts:/<path> to this URL prefix.
    root = run["info"]["artifact_uri"][len("mlflow-artifacts:/"):]
    assert root == f"{exp_id}/{run_id}/artifacts"
    base = "/api/2.0/mlflow-artifacts/artifacts"

    empty = rest.ok("GET", "/mlflow-artifacts/artifacts", {"path": root})
    assert empty.get("files", []) == []

    files = {"model/model.pkl": b"\x80\x04pickle", "model/MLmodel": b"flavors: {}\n",
             "metrics.json": b'{"acc": 0.9}', "plots/deep/roc.png": bytes(range(256)) * 10}
    for rel, data in files.items():
        status, body, _ = rest.request("PUT", f"{base}/{root}/{rel}", data,
                                       {"Content-Type": "application/octet-stream",
                                        "Content-Length": str(len(data))})
        assert status == 200, body

    listing = rest.ok("GET", "/mlflow-artifacts/artifacts", {"path": root})["files"]
    by_path = {f["path"]: f for f in listing}
    assert set(by_path) == {"model", "metrics.json", "plots"}  # names relative to the listed dir
    assert by_path["model"]["is_dir"] is True
    assert by_path["metrics.json"]["is_dir"] is False
    assert int(by_path["metrics.json"]["file_size"]) == len(files["metrics.json"])
    sub = rest.ok("GET", "/mlflow-artifacts/artifacts", {"path": f"{root}/model"})["files"]
    assert sorted((f["path"], f["is_dir"]) for f in sub) == [("MLmodel", False), ("model.pkl", False)]

    # The tracking API's list (used by the MLflow UI): paths relative to the run's artifact root.
    lst = rest.ok("GET", "/mlflow/artifacts/list", {"run_uuid": run_id, "run_id": run_id})
    assert lst["root_uri"] == run["info"]["artifact_uri"]
    assert sorted(f["path"] for f in lst["files"]) == ["metrics.json", "model", "plots"]
    lst = rest.ok("GET", "/mlflow/artifacts/list",
                  {"run_uuid": run_id, "run_id": run_id, "path": "plots/deep"})
    assert [(f["path"], f["is_dir"], int(f["file_size"])) for f in lst["files"]] == [
        ("plots/deep/roc.png", False, 2560)]

    for rel, data in files.items():
        status, body, resp = rest.request("GET", f"{base}/{root}/{rel}")
        assert status == 200
        assert body == data

    status, body, _ = rest.request("GET", f"{base}/{root}/does/not/exist.txt")
    assert status == 404, body
    # Path traversal must be refused, never served.
    status, body, _ = rest.request("GET", f"{base}/{root}/..%2F..%2F..%2Fetc%2Fpasswd")
    assert status in (400, 403, 404), body
    status, body, _ = rest.request(
        "GET", "/api/2.0/mlflow-artifacts/artifacts?" + urllib.parse.urlencode({"path": "../.."}))
    assert status in (400, 403, 404), body


def test_error_responses_are_mlflow_json(rest):
    status, body, resp = rest.request("POST", "/api/2.0/mlflow/runs/create", b"{not json",
                                      {"Content-Type": "application/json"})
    assert status == 400
    parsed = json.loads(body)
    assert parsed["error_code"] in ("MALFORMED_REQUEST", "INVALID_PARAMETER_VALUE", "BAD_REQUEST")
    assert parsed["message"]
    assert resp.getheader("Content-Type", "").startswith("application/json")

    rest.error("POST", "/mlflow/runs/create", {"experiment_id": "987654321", "start_time": _now()},
               404, "RESOURCE_DOES_NOT_EXIST")
    rest.error("POST", "/mlflow/runs/update",
               {"run_id": uuid.uuid4().hex, "status": "FINISHED"}, 404, "RESOURCE_DOES_NOT_EXIST")
