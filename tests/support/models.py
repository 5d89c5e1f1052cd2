"""Train bundles for tests through the package's own code."""

from __future__ import annotations

from pathlib import Path

from oncology_model.bundle import ModelMetadata, describe_model, save_bundle
from oncology_model.data import parse_csv
from oncology_model.evaluation import QualityGate, evaluate
from oncology_model.training import TrainingConfig, train


def train_bundle(csv: bytes, directory: Path, version: str, config: TrainingConfig | None = None) -> ModelMetadata:
    """Validate, train, evaluate and save a bundle; returns its metadata."""
    config = config or TrainingConfig()
    dataset = parse_csv(csv)
    model = train(dataset, config)
    proba = model.pipeline.predict_proba(model.split.X_test)[:, 1]
    evaluation = evaluate(model.split.y_test, proba, threshold=model.threshold.threshold, n_bootstrap=200)
    metadata = describe_model(version, dataset.report, model, config, evaluation, QualityGate().decide(evaluation))
    return save_bundle(model.pipeline, metadata, directory)
