"""Scores the trained model on the sealed test split (only an `evaluate` step may read it)."""
import json
import pickle

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

with open("/cairn/in/model/model.pkl", "rb") as f:
    model = pickle.load(f)
scaler = json.load(open("/cairn/in/model/scaler.json"))
data = np.loadtxt("/cairn/in/test/test/data.csv", delimiter=",", skiprows=1)
X = (data[:, :-1] - np.array(scaler["mean"])) / np.array(scaler["std"])
y = data[:, -1].astype(int)
proba = model.predict_proba(X)[:, 1]
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
