"""Fits a classifier on the prepared features; reports cross-validated accuracy as it goes."""
import argparse
import json
import pickle

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

p = argparse.ArgumentParser()
p.add_argument("--model", choices=["logreg", "rf", "gbt"], default="gbt")
p.add_argument("--n-estimators", type=int, default=100)
p.add_argument("--learning-rate", type=float, default=0.1)
args = p.parse_args()

data = np.loadtxt("/cairn/in/features/train.csv", delimiter=",", skiprows=1)
X, y = data[:, :-1], data[:, -1].astype(int)


def make():
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
with open("/cairn/out/model/model.pkl", "wb") as f:
    pickle.dump(model, f)
with open("/cairn/in/features/scaler.json") as src, open("/cairn/out/model/scaler.json", "w") as dst:
    dst.write(src.read())
