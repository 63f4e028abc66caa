#!/usr/bin/env python3
"""Demo training script: a scikit-learn classifier tracked with Cairn.

Trains on a dataset that ships with scikit-learn (no download), logs params,
per-iteration metrics, final metrics and artifacts (pickled model, confusion
matrix, feature importances) to a Cairn server through the `cairn` SDK.

    cairn server --port 5000 --data-dir /tmp/cairn &
    export CAIRN_URL=http://127.0.0.1:5000
    python3 examples/train.py --model gbt --n-estimators 150 --learning-rate 0.1
    python3 examples/train.py --model rf --n-estimators 200 --max-depth 6
    python3 examples/train.py --model logreg --C 0.5
    python3 examples/find_best.py --metric test_f1
"""

import argparse
import csv
import json
import os
import pickle
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import cairn  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

DATASETS = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "iris": datasets.load_iris,
    "digits": datasets.load_digits,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["logreg", "rf", "gbt"], default="gbt")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="breast_cancer")
    p.add_argument("--C", type=float, default=1.0, help="logreg: inverse regularisation strength")
    p.add_argument("--max-iter", type=int, default=500, help="logreg: solver iterations")
    p.add_argument("--n-estimators", type=int, default=100, help="rf/gbt: number of trees")
    p.add_argument("--max-depth", type=int, default=None, help="rf/gbt: tree depth (gbt default 3)")
    p.add_argument("--learning-rate", type=float, default=0.1, help="gbt: shrinkage")
    p.add_argument("--subsample", type=float, default=1.0, help="gbt: row subsampling")
    p.add_argument("--data", default=None,
                   help="a checked-out Cairn dataset with train/data.csv and test/data.csv "
                        "(columns: features..., target) instead of the built-in data set")
    p.add_argument("--cairn-dataset", default=None, metavar="NAME[@REF]",
                   help="record the Cairn dataset commit the --data directory came from as the run's input")
    p.add_argument("--test-size", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--experiment", default=os.environ.get("CAIRN_EXPERIMENT", "cairn-demo"))
    p.add_argument("--run-name", default=None)
    p.add_argument("--tracking-uri", default=None,
                   help="server URL (default: $CAIRN_URL, $MLFLOW_TRACKING_URI, http://127.0.0.1:5000)")
    return p.parse_args(argv)


def build_model(args):
    if args.model == "logreg":
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=args.C, max_iter=args.max_iter, random_state=args.seed),
        )
    if args.model == "rf":
        return RandomForestClassifier(
            n_estimators=args.n_estimators, max_depth=args.max_depth,
            random_state=args.seed, n_jobs=1,
        )
    return GradientBoostingClassifier(
        n_estimators=args.n_estimators, max_depth=args.max_depth or 3,
        learning_rate=args.learning_rate, subsample=args.subsample, random_state=args.seed,
    )


def model_params(args):
    params = {"model": args.model, "dataset": args.dataset, "seed": args.seed,
              "test_size": args.test_size}
    if args.model == "logreg":
        params.update(C=args.C, max_iter=args.max_iter)
    elif args.model == "rf":
        params.update(n_estimators=args.n_estimators, max_depth=args.max_depth)
    else:
        params.update(n_estimators=args.n_estimators, max_depth=args.max_depth or 3,
                      learning_rate=args.learning_rate, subsample=args.subsample)
    return params


def scores(y_true, proba, classes):
    """Classification metrics from predicted probabilities."""
    pred = classes[np.argmax(proba, axis=1)]
    binary = len(classes) == 2
    avg = "binary" if binary else "macro"
    out = {
        "accuracy": accuracy_score(y_true, pred),
        "f1": f1_score(y_true, pred, average=avg),
        "precision": precision_score(y_true, pred, average=avg, zero_division=0),
        "recall": recall_score(y_true, pred, average=avg, zero_division=0),
        "log_loss": log_loss(y_true, proba, labels=classes),
    }
    out["roc_auc"] = (roc_auc_score(y_true, proba[:, 1]) if binary
                      else roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
    return {k: float(v) for k, v in out.items()}


def train_with_curves(args, model, X_tr, y_tr, X_te, y_te, run):
    """Fits `model`, logging a metric per iteration where the model family has one."""
    if args.model == "gbt":
        model.fit(X_tr, y_tr)
        # One point per boosting stage: train loss and held-out accuracy / loss.
        for stage, (p_tr, p_te) in enumerate(
                zip(model.staged_predict_proba(X_tr), model.staged_predict_proba(X_te))):
            run.log_metrics({
                "train_loss": float(model.train_score_[stage]),
                "train_accuracy": accuracy_score(y_tr, model.classes_[p_tr.argmax(1)]),
                "test_accuracy": accuracy_score(y_te, model.classes_[p_te.argmax(1)]),
                "test_log_loss": log_loss(y_te, p_te, labels=model.classes_),
            }, step=stage + 1)
    elif args.model == "rf":
        # Grow the forest in ~10 increments and evaluate after each one (warm start).
        n = args.n_estimators
        sizes = sorted({max(1, round(n * k / 10)) for k in range(1, 11)})
        model.set_params(warm_start=True)
        for size in sizes:
            model.set_params(n_estimators=size)
            model.fit(X_tr, y_tr)
            p_te = model.predict_proba(X_te)
            run.log_metrics({
                "test_accuracy": accuracy_score(y_te, model.classes_[p_te.argmax(1)]),
                "test_log_loss": log_loss(y_te, p_te, labels=model.classes_),
                "train_accuracy": model.score(X_tr, y_tr),
            }, step=size)
        model.set_params(warm_start=False)
    else:
        # Learning curve: refit on growing fractions of the training set.
        rng = np.random.RandomState(args.seed)
        order = rng.permutation(len(y_tr))
        for frac in np.linspace(0.1, 1.0, 10):
            idx = order[: max(int(len(order) * frac), 10)]
            if len(np.unique(y_tr[idx])) < len(np.unique(y_tr)):
                continue  # a class is missing from this small sample
            model.fit(X_tr[idx], y_tr[idx])
            run.log_metrics({
                "lc_train_accuracy": model.score(X_tr[idx], y_tr[idx]),
                "lc_test_accuracy": model.score(X_te, y_te),
            }, step=len(idx))
        model.fit(X_tr, y_tr)
    return model


def read_split(path):
    """(feature names, X, y) from a CSV whose last column is the target."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    X = np.array([[float(v) for v in r[:-1]] for r in body])
    y = np.array([int(r[-1]) for r in body])
    return header[:-1], X, y


def feature_importance(model, feature_names):
    est = model[-1] if hasattr(model, "steps") else model
    if hasattr(est, "feature_importances_"):
        values = est.feature_importances_
    else:  # linear model: mean |coefficient| over classes (features are standardised)
        values = np.abs(est.coef_).mean(axis=0)
    return sorted(zip(feature_names, map(float, values)), key=lambda kv: -kv[1])


def main(argv=None):
    args = parse_args(argv)
    if args.tracking_uri:
        cairn.set_tracking_uri(args.tracking_uri)

    if args.data:
        feature_names, X_tr, y_tr = read_split(os.path.join(args.data, "train", "data.csv"))
        _, X_te, y_te = read_split(os.path.join(args.data, "test", "data.csv"))
        class_names = [str(c) for c in np.unique(np.concatenate([y_tr, y_te]))]
    else:
        data = DATASETS[args.dataset]()
        X, y = data.data, data.target
        feature_names = list(getattr(data, "feature_names", [f"f{i}" for i in range(X.shape[1])]))
        class_names = [str(c) for c in getattr(data, "target_names", np.unique(y))]
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=args.test_size, random_state=args.seed, stratify=y)

    run_name = args.run_name or f"{args.model}-{args.dataset}-{int(time.time()) % 100000}"
    tags = {"dataset": args.dataset, "model_family": args.model,
            "sklearn_version": sklearn.__version__, "python_version": platform.python_version()}
    with cairn.start_run(experiment=args.experiment, run_name=run_name, tags=tags) as run:
        print(f"run {run.id} ({run_name}) in experiment {args.experiment!r} at {cairn.get_tracking_uri()}")
        if args.cairn_dataset:
            name, _, ref = args.cairn_dataset.partition("@")
            train_commit = run.log_dataset(name, ref=ref or "main", context="training", split="train")
            run.log_dataset(name, ref=train_commit["id"], context="evaluation", split="test")
            print(f"data: {name}@{train_commit['id'][:12]} (train and test splits)")
        run.log_params(model_params(args))
        run.log_params({"n_train": len(y_tr), "n_test": len(y_te), "n_features": X_tr.shape[1],
                        "n_classes": len(class_names)})

        model = build_model(args)
        t0 = time.perf_counter()
        model = train_with_curves(args, model, X_tr, y_tr, X_te, y_te, run)  # fitted on all of X_tr
        train_time = time.perf_counter() - t0

        classes = model.classes_
        test = scores(y_te, model.predict_proba(X_te), classes)
        train = scores(y_tr, model.predict_proba(X_tr), classes)
        final = {f"test_{k}": v for k, v in test.items()}
        final.update({f"train_{k}": v for k, v in train.items() if k in ("accuracy", "f1")})
        final["train_time_s"] = train_time
        run.log_metrics(final)

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = os.path.join(tmp, "model")
            os.makedirs(model_dir)
            with open(os.path.join(model_dir, "model.pkl"), "wb") as f:
                pickle.dump(model, f)
            with open(os.path.join(model_dir, "metadata.json"), "w") as f:
                json.dump({"framework": "sklearn", "sklearn_version": sklearn.__version__,
                           "estimator": type(model).__name__, "feature_names": feature_names,
                           "classes": class_names, "python_version": platform.python_version()},
                          f, indent=2)
            run.log_artifacts(model_dir, artifact_path="model")

            cm = confusion_matrix(y_te, model.predict(X_te), labels=classes)
            cm_csv = os.path.join(tmp, "confusion_matrix.csv")
            with open(cm_csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["true\\pred"] + class_names)
                for name, row in zip(class_names, cm.tolist()):
                    w.writerow([name] + row)
            run.log_artifact(cm_csv, artifact_path="evaluation")
            run.log_dict({"labels": class_names, "matrix": cm.tolist()},
                         "evaluation/confusion_matrix.json")

            fi_csv = os.path.join(tmp, "feature_importance.csv")
            with open(fi_csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["feature", "importance"])
                w.writerows(feature_importance(model, feature_names))
            run.log_artifact(fi_csv, artifact_path="evaluation")

        run.log_dict(final, "evaluation/metrics.json")

    print(json.dumps({"run_id": run.id, **{k: round(v, 4) for k, v in final.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
