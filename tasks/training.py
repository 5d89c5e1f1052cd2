"""Train stage: the production champion, the candidate (fit, evaluate, gate, package), stored on S3."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from oncology_model.bundle import ModelMetadata
from oncology_model.candidate import Candidate, Champion, make_candidate
from oncology_model.classifier import Classifier
from oncology_model.data import Dataset
from oncology_pipeline import layout, modelstore, s3store
from oncology_pipeline.errors import ConfigurationError
from oncology_pipeline.reports import gate_markdown, history_row, metrics_rows
from oncology_pipeline.settings import PipelineSettings
from tasks.artifacts import record_objects
from tasks.clients import aws_client
from tasks.policy import NETWORK_RETRIES
from tasks.runs import ensure_concurrency_limit

MODEL_REGISTRY_LIMIT = "model-registry"  # one writer at a time of history.csv (the pointer is compare-and-swap)


@task(name="fetch_model_bundle", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def fetch_model_bundle(settings: PipelineSettings, version: str | None = None) -> tuple[str, Path] | None:
    """A model version's bundle from S3 (default: production, via models/production.json); None before the first."""
    s3 = aws_client(settings, "s3")
    found = modelstore.fetch_bundle(
        s3, settings.model_bucket, settings.model_prefix, settings.cache_dir / "models", version
    )
    log = get_run_logger()
    if found is None:
        log.info(
            "no production model at %s yet",
            layout.uri(settings.model_bucket, layout.pointer_key(settings.model_prefix)),
        )
    else:
        folder = f"{layout.version_prefix(settings.model_prefix, found[0])}/"
        log.info("model %s from %s in %s", found[0], layout.uri(settings.model_bucket, folder), found[1])
    return found


@task(name="model_bundle_to_use", cache_policy=NO_CACHE)
def model_bundle_to_use(settings: PipelineSettings, model_dir: Path | None, model_version: str | None) -> Path:
    """`model_dir` when given, else `model_version` (default: production) fetched from S3."""
    if model_dir is not None:
        return model_dir
    fetched = fetch_model_bundle(settings, model_version)
    if fetched is None:
        raise ConfigurationError("no model in production yet: run the train flow first, or pass a model directory")
    return fetched[1]


@task(name="load_champion", cache_policy=NO_CACHE)
def load_champion(bundle: tuple[str, Path] | None) -> Champion | None:
    """Load the production model (the champion) fetched from S3; None on the first run."""
    return None if bundle is None else Champion(bundle[0], Classifier.from_bundle(bundle[1]))


@task(name="train_candidate", cache_policy=NO_CACHE)
def train_candidate(
    dataset: Dataset, settings: PipelineSettings, champion: Champion | None, version: str, directory: Path
) -> Candidate:
    """Train, evaluate, gate and package the model (one call); publishes its metrics and the gate decision."""
    start = time.perf_counter()
    config = settings.training_config()
    candidate = make_candidate(
        dataset,
        config,
        version=version,
        directory=directory,
        gate=settings.gate,
        resamples=settings.bootstrap_resamples,
        champion=champion,
    )
    model, evaluation, decision = candidate.model, candidate.evaluation, candidate.decision
    log = get_run_logger()
    log.info(
        "%s on %d rows (hold-out %d) trained, evaluated, gated and packaged in %.2f s; mean %d-fold CV scores %s",
        config.estimator,
        len(model.split.y_train),
        len(model.split.y_test),
        time.perf_counter() - start,
        config.cv_folds,
        ", ".join(f"{name} {sum(s) / len(s):.4f}" for name, s in model.cv_scores.items()),
    )
    create_table_artifact(
        table=metrics_rows(evaluation),
        key="model-metrics",
        description="Hold-out metrics with 95 % bootstrap confidence intervals",
    )
    log.info(
        "hold-out at threshold %.4f: %s",
        evaluation.threshold,
        ", ".join(f"{n} {evaluation.value(n):.4f}" for n in ("accuracy", "recall", "specificity", "roc_auc")),
    )
    create_markdown_artifact(
        markdown=gate_markdown(decision, version, model.threshold, evaluation),
        key="quality-gate",
        description="Quality gate decision",
    )
    log.info("quality gate %s: %s", "passed" if decision.passed else "FAILED", "; ".join(decision.reasons))
    log.info("bundle %s written to %s (model sha256 %s)", version, directory, candidate.metadata.model_sha256[:12])
    return candidate


@task(name="upload_model_bundle", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def upload_model_bundle(settings: PipelineSettings, bundle_dir: Path, version: str) -> list[s3store.S3Object]:
    """Upload the bundle under models/<version>/ as a candidate (production moves only after a verified deploy)."""
    s3 = aws_client(settings, "s3")
    start = time.perf_counter()
    prefix = layout.version_prefix(settings.model_prefix, version)
    written = s3store.upload_directory(s3, settings.model_bucket, prefix, bundle_dir)
    get_run_logger().info(
        "uploaded %s in %.2f s: %s",
        version,
        time.perf_counter() - start,
        ", ".join(f"{o.uri} ({o.size} bytes)" for o in written),
    )
    record_objects("model-bundle-objects", f"Model bundle {version}: S3 objects", written)
    return written


@task(name="upload_reports", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def upload_reports(settings: PipelineSettings, reports: dict[str, Any], title: str) -> list[s3store.S3Object]:
    """Upload JSON reports to the metrics bucket (`reports` maps key -> JSON payload)."""
    s3 = aws_client(settings, "s3")
    written = [s3store.put_json(s3, settings.metrics_bucket, key, payload) for key, payload in reports.items()]
    get_run_logger().info("uploaded %s", ", ".join(f"{o.uri} ({o.size} bytes)" for o in written))
    record_objects(f"{title.lower().replace(' ', '-')}-objects", f"{title}: S3 objects", written)
    return written


@task(name="record_metrics_history", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def record_metrics_history(settings: PipelineSettings, metadata: ModelMetadata) -> list[s3store.S3Object]:
    """Append this version's row to trainer/metrics/history.csv and keep its QuickSight manifest beside it."""
    s3 = aws_client(settings, "s3")
    history_key = layout.HISTORY
    row = history_row(metadata.model_dump(mode="json"))
    ensure_concurrency_limit(MODEL_REGISTRY_LIMIT)
    with concurrency(MODEL_REGISTRY_LIMIT, occupy=1, strict=True):  # read-modify-write of the history
        history = s3store.append_csv_row(s3, settings.metrics_bucket, history_key, row)
    manifest = s3store.put_json(
        s3,
        settings.metrics_bucket,
        layout.QUICKSIGHT_MANIFEST,
        s3store.quicksight_manifest(settings.metrics_bucket, history_key),
    )
    get_run_logger().info(
        "metrics history: %s (%d bytes); QuickSight manifest %s", history.uri, history.size, manifest.uri
    )
    return [history, manifest]
