"""The seed-style baseline service: Flask under gunicorn, a one-row pandas DataFrame per request + `Pipeline.predict`.

Only for `make benchmark`, never shipped. It serves the same model bundle; it neither validates nor returns the
probability, as the seed did not:

    SEED_MODEL_DIR=model gunicorn --workers 1 --worker-class sync --bind 127.0.0.1:8001 \\
        'benchmarks.seed_service:create_app()'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from flask import Flask, Response, jsonify, request
from sklearn.pipeline import Pipeline

from oncology_model.bundle import load_bundle
from oncology_model.datamodel import FEATURES, Prediction


def seed_predict(pipeline: Pipeline, payload: Mapping[str, object]) -> Prediction:
    """The seed's prediction path: a one-row DataFrame, then `Pipeline.predict` (threshold 0.5)."""
    frame = pd.DataFrame([payload], columns=list(FEATURES))
    return Prediction.from_classifier(int(pipeline.predict(frame.to_numpy(dtype=np.float64))[0]))


def create_app() -> Flask:
    """The Flask app on the bundle in $SEED_MODEL_DIR."""
    pipeline, metadata = load_bundle(Path(os.environ["SEED_MODEL_DIR"]))
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.post("/v1/predictions")
    def predict() -> Response:
        label = seed_predict(pipeline, request.get_json())
        return jsonify(prediction=label.value, model_version=metadata.model_version)

    return app
