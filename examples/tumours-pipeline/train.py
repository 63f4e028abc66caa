"""Fits a classifier on the prepared features; reports cross-validated accuracy as it goes.

The model folder it writes is servable as is: a cairn-model.yaml descriptor
(docs/model-format.md) names the flavor, the file and the signature. The
served model takes raw biopsy measurements: XGBoost trees are trained on the
unscaled values (trees do not need scaling), the scikit-learn models carry
the scaler in a pipeline."""
import argparse
import json
import pickle
import sys

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

p = argparse.ArgumentParser()
p.add_argument("--model", choices=["logreg", "rf", "gbt", "xgb"], default="xgb")
p.add_argument("--n-estimators", type=int, default=100)
p.add_argument("--learning-rate", type=float, default=0.1)
args = p.parse_args()

data = np.loadtxt("/cairn/in/features/train.csv", delimiter=",", skiprows=1)
X, y = data[:, :-1], data[:, -1].astype(int)
scaler = json.load(open("/cairn/in/features/scaler.json"))
mean, std = np.array(scaler["mean"]), np.array(scaler["std"])
if args.model == "xgb":
    X = X * std + mean  # back to raw measurements


def make():
    if args.model == "xgb":
        import xgboost as xgb
        return xgb.XGBClassifier(n_estimators=args.n_estimators, learning_rate=args.learning_rate, max_depth=4,
                                 n_jobs=1, random_state=0)
    if args.model == "logreg":
        return LogisticRegression(max_iter=2000)
    if args.model == "rf":
        return RandomForestClassifier(n_estimators=args.n_estimators, random_state=0)
    return GradientBoostingClassifier(n_estimators=args.n_estimators, learning_rate=args.learning_rate, random_state=0)


scores = []
for fold, (tr, va) in enumerate(StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(X, y)):
    scores.append(make().fit(X[tr], y[tr]).score(X[va], y[va]))
    print(json.dumps({"metric": "cv_accuracy", "value": scores[-1], "step": fold}), flush=True)
print(json.dumps({"metric": "cv_accuracy_mean", "value": float(np.mean(scores))}))
model = make().fit(X, y)
signature_in = [{"name": "biopsy", "datatype": "FP32", "shape": [-1, X.shape[1]]}]
if args.model == "xgb":
    model.get_booster().save_model("/cairn/out/model/model.json")
    descriptor = {"flavor": "xgboost", "file": "model.json",
                  "signature": {"inputs": signature_in,
                                "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1]}]}}
else:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    scale = StandardScaler()
    scale.mean_, scale.scale_, scale.var_, scale.n_features_in_ = mean, std, std ** 2, len(mean)
    with open("/cairn/out/model/model.pkl", "wb") as f:
        pickle.dump(make_pipeline(scale, model), f)
    descriptor = {"flavor": "python", "file": "model.pkl", "options": {"method": "predict_proba"},
                  "signature": {"inputs": signature_in,
                                "outputs": [{"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]}]}}
with open("/cairn/out/model/cairn-model.yaml", "w") as f:
    json.dump(descriptor, f, indent=2)  # JSON is YAML
    f.write("\n")
print(f"model written: {descriptor['flavor']} {descriptor['file']}", file=sys.stderr)
