"""Flow `train`: data (the training CSV and the labelled cases) -> validate -> champion -> train, evaluate, gate,
package -> upload a candidate (the seed's `make train`).

Training never changes production: an approved model is a candidate under models/<version>/, released by the
pipeline flow (test -> publish -> deploy -> verify -> promote)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncology_model.candidate import Candidate
from oncology_model.config import Estimator
from oncology_model.data import Dataset
from oncology_model.errors import QualityGateFailed
from oncology_pipeline import layout, releases
from oncology_pipeline.releases import lock_sha256, training_files
from oncology_pipeline.s3store import CachedDownload
from oncology_pipeline.settings import Overrides, PipelineSettings, load_settings
from tasks.data import download_labelled_data, download_training_data, validate_data
from tasks.releases import announce_candidate, update_release
from tasks.runs import pipeline_flow, stamp_run
from tasks.training import (
    fetch_model_bundle,
    load_champion,
    record_metrics_history,
    train_candidate,
    upload_model_bundle,
    upload_reports,
)


@dataclass(frozen=True)
class TrainOutcome:
    """The trained, approved model: its version, local bundle and every S3 object written."""

    version: str
    bundle_dir: Path
    s3_uris: list[str]
    metrics: dict[str, float]
    gate: list[str]


@pipeline_flow("train", "version")
def train(
    version: str | None = None,
    estimator: Estimator | None = None,
    overrides: Overrides = None,
) -> TrainOutcome:
    """Train on the S3 data and store the model as a candidate if the quality gate passes (the run fails
    otherwise). The champion it must not be worse than is the production (serving) model.

    Args:
        version: the version to stamp (default: the run's UTC start and flow-run id).
        estimator: logistic_regression, random_forest or gradient_boosting (default: the settings').
        overrides: settings for this run, e.g. {"test_size": 0.25, "cv_folds": 10, "decision_threshold": 0.3,
            "gate": {"min_recall": 0.97}} (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings({**(overrides or {}), **({"estimator": estimator} if estimator else {})})
    version = stamp_run(version)
    data = download_training_data(settings)
    labelled = download_labelled_data(settings)
    dataset = validate_data(data, labelled, settings.max_invalid_share, settings.max_missing_share)
    champion = load_champion(fetch_model_bundle(settings))
    bundle_dir = settings.run_dir(version) / "model"
    candidate = train_candidate(dataset, settings, champion, version, bundle_dir)
    evaluation, decision, metadata = candidate.evaluation, candidate.decision, candidate.metadata
    written = upload_model_bundle(settings, bundle_dir, version) if decision.passed else []
    written += upload_reports(
        settings, {layout.metrics_key(version): metadata.model_dump(mode="json")}, "Metrics report"
    )
    written += record_metrics_history(settings, metadata)
    update_release(settings, version, _trained(settings, data, labelled, dataset, candidate))
    if decision.passed:
        announce_candidate(version)
    if not decision.passed:
        raise QualityGateFailed(decision.reasons)
    return TrainOutcome(
        version=version,
        bundle_dir=bundle_dir,
        s3_uris=[o.uri for o in written],
        metrics={name: est.value for name, est in evaluation.metrics.items()},
        gate=decision.reasons,
    )


def _trained(
    settings: PipelineSettings,
    data: CachedDownload,
    labelled: list[CachedDownload],
    dataset: Dataset,
    candidate: Candidate,
) -> dict[str, Any]:
    """The release record's change: the data and code the model came from, its metrics and the gate's decision."""
    report, metadata = dataset.report, candidate.metadata
    return releases.trained(
        passed=candidate.decision.passed,
        data=releases.DataSection(
            source=data.source.uri,
            etag=data.source.etag,
            sha256=report.sha256,
            rows_read=report.rows_read,
            rows_kept=report.rows_kept,
        ),
        training_data=training_files([data, *labelled], report.files),
        code=releases.CodeSection(revision=metadata.git_revision, lock_sha256=lock_sha256(Path.cwd())),
        training=settings.training_config().model_dump(mode="json"),
        metrics={name: est.model_dump(mode="json") for name, est in candidate.evaluation.metrics.items()},
        gate=candidate.decision.model_dump(mode="json"),
    )


if __name__ == "__main__":
    train()
