"""Train -> evaluate -> gate -> package: the one way a model bundle is made (CLI, train flow, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oncology_model.bundle import ModelMetadata, describe_model, save_bundle
from oncology_model.classifier import Classifier
from oncology_model.config import BOOTSTRAP_RESAMPLES, GateThresholds, TrainingConfig
from oncology_model.data import Dataset
from oncology_model.evaluation import Evaluation, GateDecision, QualityGate, compare, evaluate, repeated_cv_estimate
from oncology_model.training import TrainedModel, repeated_cross_validation, train


@dataclass(frozen=True)
class Champion:
    """The model in production now: a challenger must not be worse than it on the same hold-out rows."""

    version: str
    classifier: Classifier


@dataclass(frozen=True)
class Candidate:
    """A trained model with its hold-out evaluation, gate decision and metadata; `bundle_dir` is None when a
    rejected model was not saved."""

    model: TrainedModel
    evaluation: Evaluation
    decision: GateDecision
    metadata: ModelMetadata
    bundle_dir: Path | None


def make_candidate(
    dataset: Dataset,
    config: TrainingConfig,
    *,
    version: str,
    directory: Path,
    gate: GateThresholds | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    champion: Champion | None = None,
    save_rejected: bool = True,
) -> Candidate:
    """Train on `dataset`, evaluate on the hold-out (bootstrap intervals) and by repeated cross-validation of all
    of `dataset`, gate the floors on the latter and the champion comparison on the former, and save the bundle to
    `directory` (a model the gate rejects only when `save_rejected`)."""
    gate = gate or GateThresholds()
    model = train(dataset, config)
    folds = repeated_cross_validation(dataset, config, folds=gate.cv_folds, repeats=gate.cv_repeats)
    repeated = repeated_cv_estimate(
        [(f.y, f.proba, f.threshold) for f in folds], repeats=gate.cv_repeats, train_rows=folds[0].train_rows
    )
    split = model.split
    threshold = model.threshold.threshold
    proba = model.pipeline.predict_proba(split.X_test)[:, 1]
    evaluation = evaluate(
        split.y_test, proba, threshold=threshold, n_bootstrap=resamples, seed=config.seed, cv_scores=model.cv_scores
    ).model_copy(update={"repeated_cv": repeated})
    comparison = None
    if champion is not None:
        comparison = compare(
            split.y_test,
            (proba, threshold),
            (champion.classifier.probabilities(split.X_test), champion.classifier.threshold),
            n_bootstrap=resamples,
            seed=config.seed,
        )
    decision = QualityGate(gate).decide(evaluation, comparison, champion.version if champion else None)
    metadata = describe_model(version, dataset.report, model, config, evaluation, decision)
    if not (decision.passed or save_rejected):
        return Candidate(model, evaluation, decision, metadata, None)
    return Candidate(model, evaluation, decision, save_bundle(model.pipeline, metadata, directory), directory)
