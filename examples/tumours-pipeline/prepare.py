"""Standardises the training features; the scaler travels with the data."""
import csv
import json

with open("/cairn/in/raw/train/data.csv") as f:
    rows = list(csv.reader(f))
header, body = rows[0], [[float(v) for v in r] for r in rows[1:]]
n_features = len(header) - 1
means = [sum(r[i] for r in body) / len(body) for i in range(n_features)]
stds = [max((sum((r[i] - means[i]) ** 2 for r in body) / len(body)) ** 0.5, 1e-12) for i in range(n_features)]
with open("/cairn/out/features/train.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    for r in body:
        w.writerow([repr((r[i] - means[i]) / stds[i]) for i in range(n_features)] + [int(r[-1])])
with open("/cairn/out/features/scaler.json", "w") as f:
    json.dump({"features": header[:-1], "mean": means, "std": stds}, f)
print(json.dumps({"metric": "train_rows", "value": len(body)}))
print(json.dumps({"metric": "positive_rate", "value": sum(r[-1] for r in body) / len(body)}))
