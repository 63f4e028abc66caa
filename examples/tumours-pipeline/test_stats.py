"""Describes the sealed test split (its size and class balance); needs no model."""
import csv
import json

with open("/cairn/in/test/test/data.csv") as f:
    rows = list(csv.reader(f))[1:]
positives = sum(int(r[-1]) for r in rows)
print(json.dumps({"metric": "test_rows", "value": len(rows)}))
print(json.dumps({"metric": "test_positive_rate", "value": positives / len(rows)}))
