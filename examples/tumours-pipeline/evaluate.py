"""Scores the trained model on the sealed test split (only an `evaluate` step may read it)."""
import json
import pickle

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

data = np.loadtxt("/cairn/in/test/test/data.csv", delimiter=",", skiprows=1)
X, y = data[:, :-1], data[:, -1].astype(int)  # raw measurements: the model folder is what gets served
descriptor = json.load(open("/cairn/in/model/cairn-model.yaml"))
if descriptor["flavor"] == "xgboost":
    import xgboost as xgb
    booster = xgb.Booster()
    booster.load_model("/cairn/in/model/" + descriptor["file"])
    proba = booster.inplace_predict(X.astype(np.float32))
else:
    with open("/cairn/in/model/" + descriptor["file"], "rb") as f:
        proba = pickle.load(f).predict_proba(X)[:, 1]
report = {
    "test_accuracy": float(accuracy_score(y, proba > 0.5)),
    "test_log_loss": float(log_loss(y, proba)),
    "test_roc_auc": float(roc_auc_score(y, proba)),
    "test_rows": int(len(y)),
}
for k, v in report.items():
    print(json.dumps({"metric": k, "value": v}))
with open("/cairn/out/report/report.json", "w") as f:
    json.dump(report, f, indent=2)
