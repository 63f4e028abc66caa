#!/usr/bin/python3
"""Writes the model fixtures of the shared backend suite (model_backend_suite.h).

Usage: make_models.py OUT_DIR FIXTURE...

Each fixture is a model artifact folder OUT_DIR/FIXTURE (a descriptor, the model
file) plus OUT_DIR/FIXTURE/expected.json: 17 rows of inputs and the outputs
Python computed for them, as OIP-style tensors with flat data:
  {"inputs":  [{"name", "datatype", "shape", "data"}],
   "outputs": [{"name", "datatype", "shape", "data"}]}

Fixtures come in groups that share an import (xgboost, torch, scikit-learn);
asking for one writes its whole group, so that a test binary pays each import
once. Everything is seeded: the same fixtures on every run.
"""

import json
import os
import sys

import numpy as np

ROWS = 17
DATATYPES = {
    np.dtype("bool"): "BOOL", np.dtype("uint8"): "UINT8", np.dtype("int32"): "INT32",
    np.dtype("int64"): "INT64", np.dtype("float32"): "FP32", np.dtype("float64"): "FP64",
}


def tensor(name, array):
    array = np.ascontiguousarray(array)
    return {"name": name, "datatype": DATATYPES[array.dtype], "shape": list(array.shape),
            "data": array.ravel().tolist()}


def write(folder, name, text, mode="w"):
    with open(os.path.join(folder, name), mode) as f:
        f.write(text)


def new_fixture(out, name):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    return folder


def write_expected(folder, inputs, outputs):
    # expected.json last: its presence tells the suite the fixture is complete.
    write(folder, "expected.json.tmp",
          json.dumps({"inputs": [tensor(n, a) for n, a in inputs],
                      "outputs": [tensor(n, a) for n, a in outputs]}))
    os.replace(os.path.join(folder, "expected.json.tmp"), os.path.join(folder, "expected.json"))


# --- XGBoost -----------------------------------------------------------------

def make_xgboost(out):
    import xgboost as xgb
    rng = np.random.default_rng(5)

    # Binary classifier: 100 trees over 30 features (the benchmark's model).
    x = rng.normal(size=(400, 30)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3] > 0).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1, "seed": 0},
                        xgb.DMatrix(x, label=y), num_boost_round=100)
    rows = rng.normal(size=(ROWS, 30)).astype(np.float32)
    predicted = booster.predict(xgb.DMatrix(rows)).astype(np.float32)

    folder = new_fixture(out, "xgb_json")
    booster.save_model(os.path.join(folder, "model.json"))
    write(folder, "cairn-model.yaml",
          "flavor: xgboost\n"
          "file: model.json\n"
          "signature:\n"
          "  inputs: [{name: features, datatype: FP32, shape: [-1, 30]}]\n"
          "  outputs: [{name: predict, datatype: FP32, shape: [-1]}]\n")
    write_expected(folder, [("features", rows)], [("predict", predicted)])

    # The same booster as UBJSON, with no signature: the backend supplies
    # "input" FP32 [-1, 30] -> "predict".
    folder = new_fixture(out, "xgb_ubj")
    booster.save_model(os.path.join(folder, "model.ubj"))
    write(folder, "cairn-model.yaml", "flavor: xgboost\nfile: model.ubj\n")
    write_expected(folder, [("input", rows)], [("predict", predicted)])

    # Three classes over 10 features: probabilities [N, 3].
    x = rng.normal(size=(300, 10)).astype(np.float32)
    y = np.digitize(x[:, 0] + x[:, 1], [-0.5, 0.5]).astype(np.float32)
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1, "seed": 0},
                        xgb.DMatrix(x, label=y), num_boost_round=20)
    rows = rng.normal(size=(ROWS, 10)).astype(np.float32)
    folder = new_fixture(out, "xgb_multiclass")
    booster.save_model(os.path.join(folder, "model.json"))
    write(folder, "cairn-model.yaml",
          "flavor: xgboost\n"
          "file: model.json\n"
          "signature:\n"
          "  inputs:\n"
          "    - name: x\n"
          "      datatype: FP32\n"
          "      shape: [-1, 10]\n")
    write_expected(folder, [("x", rows)], [("predict", booster.predict(xgb.DMatrix(rows)).astype(np.float32))])

    # An MLflow model folder as mlflow.xgboost.log_model writes it for an
    # XGBClassifier trained on a pandas DataFrame: a column-based signature
    # (one double column per feature) and the model as model.xgb, which
    # XGBoost 1.x writes in its legacy binary format.
    columns = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    x = rng.normal(size=(200, 4))
    y = (x[:, 2] + x[:, 3] > 0).astype(np.float64)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 0},
                        xgb.DMatrix(x, label=y), num_boost_round=10)
    rows = rng.normal(size=(ROWS, 4))
    folder = new_fixture(out, "mlflow_xgb")
    booster.save_model(os.path.join(folder, "model.xgb"))
    inputs = json.dumps([{"type": "double", "name": c, "required": True} for c in columns])
    write(folder, "MLmodel",
          "artifact_path: model\n"
          "flavors:\n"
          "  python_function:\n"
          "    data: model.xgb\n"
          "    env:\n"
          "      conda: conda.yaml\n"
          "      virtualenv: python_env.yaml\n"
          "    loader_module: mlflow.xgboost\n"
          "    python_version: 3.11.2\n"
          "  xgboost:\n"
          "    code: null\n"
          "    data: model.xgb\n"
          "    model_class: xgboost.sklearn.XGBClassifier\n"
          "    model_format: xgb\n"
          f"    xgb_version: {xgb.__version__}\n"
          "mlflow_version: 2.9.2\n"
          "model_uuid: 3f1c2ad4e5b64c1c9f0e6d1c2b3a4f50\n"
          "run_id: 0aa3cdce14f448a79be2482a5ebedc5c\n"
          "signature:\n"
          f"  inputs: '{inputs}'\n"
          "  outputs: '[{\"type\": \"long\", \"required\": true}]'\n"
          "  params: null\n"
          "utc_time_created: '2024-03-01 10:00:00.000000'\n")
    predicted = booster.predict(xgb.DMatrix(rows)).astype(np.float32)
    write_expected(folder, [(c, rows[:, i].copy()) for i, c in enumerate(columns)], [("predict", predicted)])


# --- TorchScript ---------------------------------------------------------------

def make_torch(out):
    import torch
    torch.manual_seed(0)

    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = torch.nn.Linear(8, 16)
            self.out = torch.nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.out(torch.relu(self.hidden(x))), dim=1)

    model = torch.jit.script(Mlp().eval())
    folder = new_fixture(out, "torch_mlp")
    torch.jit.save(model, os.path.join(folder, "model.pt"))
    write(folder, "cairn-model.yaml",
          "flavor: torchscript\n"
          "file: model.pt\n"
          "signature:\n"
          "  inputs: [{name: x, datatype: FP32, shape: [-1, 8]}]\n"
          "  outputs: [{name: probabilities, datatype: FP32, shape: [-1, 3]}]\n")
    rows = np.random.default_rng(7).normal(size=(ROWS, 8)).astype(np.float32)
    with torch.no_grad():
        predicted = model(torch.from_numpy(rows)).numpy().astype(np.float32)
    write_expected(folder, [("x", rows)], [("probabilities", predicted)])


# --- Python: a pickled scikit-learn estimator and a predict() function ---------

PREDICT_PY = '''\
"""A model as a plain Python function, as Cairn's Python flavor serves it.

predict() receives every input by name as a numpy array (dimension 0 is the
batch) and returns a dict of output arrays with the same number of rows:
"y" is a linear function of "a" and "b", "label" says whether it is
positive. The weights are fixed so that the fixture's expected outputs can
be computed without running this file; this long docstring keeps the middle
of the file inside a string literal, so a truncated copy is a syntax error
(the suite's corrupt-model case) rather than a shorter but valid program.
The rest of this paragraph is padding for that purpose. Lorem ipsum dolor
sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut
labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud
exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.
"""

import numpy as np

WEIGHTS = np.array([0.5, -1.25, 2.0], dtype=np.float64)


def predict(inputs: dict) -> dict:
    a = np.asarray(inputs["a"], dtype=np.float64)
    b = np.asarray(inputs["b"], dtype=np.float64)
    y = a @ WEIGHTS + b
    return {"y": y, "label": (y > 0).astype(np.int64)}
'''


def make_python(out):
    import pickle
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(11)

    x = rng.normal(size=(200, 4))
    y = np.digitize(x[:, 0] - x[:, 1], [-0.7, 0.7])
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    rows = rng.normal(size=(ROWS, 4))
    folder = new_fixture(out, "sklearn_pickle")
    with open(os.path.join(folder, "model.pkl"), "wb") as f:
        pickle.dump(estimator, f)
    write(folder, "cairn-model.yaml",
          "flavor: python\n"
          "file: model.pkl\n"
          "signature:\n"
          "  inputs: [{name: features, datatype: FP64, shape: [-1, 4]}]\n"
          "  outputs: [{name: predict, datatype: INT64, shape: [-1]}]\n")
    write_expected(folder, [("features", rows)], [("predict", estimator.predict(rows).astype(np.int64))])

    half = len(PREDICT_PY) // 2
    try:
        compile(PREDICT_PY[:half], "predict.py", "exec")
        raise SystemExit("make_models.py: a truncated predict.py must not compile")
    except SyntaxError:
        pass
    folder = new_fixture(out, "py_function")
    write(folder, "predict.py", PREDICT_PY)
    write(folder, "cairn-model.yaml",
          "flavor: python\n"
          "file: predict.py\n"
          "signature:\n"
          "  inputs:\n"
          "    - {name: a, datatype: FP32, shape: [-1, 3]}\n"
          "    - {name: b, datatype: FP64, shape: [-1]}\n"
          "  outputs:\n"
          "    - {name: y, datatype: FP64, shape: [-1]}\n"
          "    - {name: label, datatype: INT64, shape: [-1]}\n")
    a = rng.normal(size=(ROWS, 3)).astype(np.float32)
    b = rng.normal(size=ROWS)
    yv = a.astype(np.float64) @ np.array([0.5, -1.25, 2.0]) + b
    write_expected(folder, [("a", a), ("b", b)], [("y", yv), ("label", (yv > 0).astype(np.int64))])


GROUPS = {
    "xgb_json": make_xgboost, "xgb_ubj": make_xgboost, "xgb_multiclass": make_xgboost, "mlflow_xgb": make_xgboost,
    "torch_mlp": make_torch,
    "sklearn_pickle": make_python, "py_function": make_python,
}


def main(argv):
    if len(argv) < 3:
        sys.exit(f"usage: {argv[0]} OUT_DIR FIXTURE...  (fixtures: {', '.join(GROUPS)})")
    out = argv[1]
    done = set()
    for name in argv[2:]:
        make = GROUPS.get(name)
        if make is None:
            sys.exit(f"make_models.py: unknown fixture '{name}' (known: {', '.join(GROUPS)})")
        if make not in done:
            make(out)
            done.add(make)


if __name__ == "__main__":
    main(sys.argv)
