"""The usual hand-made alternative to a model server: an XGBoost model behind
Flask, run by gunicorn, answering the same Open Inference Protocol v2 JSON
request as Cairn (POST /v2/models/NAME/infer). Used by bench/serving_bench.cc
side by side with Cairn.

    MODEL_FILE=model.json gunicorn -w 2 -k gthread --threads 8 -b 127.0.0.1:PORT flask_oip:app
"""
import os

import numpy as np
import xgboost as xgb
from flask import Flask, jsonify, request

app = Flask(__name__)
booster = xgb.Booster()
booster.load_model(os.environ["MODEL_FILE"])
booster.set_param({"nthread": 1})


@app.post("/v2/models/<name>/infer")
def infer(name):
    body = request.get_json(force=True)
    x = body["inputs"][0]
    rows = np.asarray(x["data"], dtype=np.float32).reshape(x["shape"])
    pred = booster.inplace_predict(rows)
    return jsonify({
        "model_name": name,
        "id": body.get("id", ""),
        "outputs": [{"name": "predict", "datatype": "FP32", "shape": [len(pred)],
                     "data": pred.astype(float).tolist()}],
    })


@app.get("/v2/health/ready")
def ready():
    return "", 200
