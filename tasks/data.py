"""Data stage: download the training CSV from S3 (ETag-cached) and validate it."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from oncology_model.data import Dataset, load_csv
from oncology_pipeline import s3store
from oncology_pipeline.reports import validation_markdown
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client
from tasks.policy import NETWORK_RETRIES


@task(name="download_training_data", tags=["data"], cache_policy=NO_CACHE, **NETWORK_RETRIES)
def download_training_data(settings: PipelineSettings) -> s3store.CachedDownload:
    """Download the training CSV unless the local cache holds the same ETag; returns path and fingerprint."""
    log = get_run_logger()
    start = time.perf_counter()
    result = s3store.download_cached(
        aws_client(settings, "s3"), settings.data_bucket, settings.data_key, settings.cache_dir
    )
    action = "downloaded" if result.downloaded else "cache hit (same ETag), not downloaded"
    log.info(
        "%s: %s, %d bytes, ETag %s, version %s, %.2f s",
        result.source.uri,
        action,
        result.source.size,
        result.source.etag,
        result.source.version_id or "-",
        time.perf_counter() - start,
    )
    return result


@task(name="validate_data", tags=["data"], cache_policy=NO_CACHE)
def validate_data(path: Path, source: str, max_invalid_share: float, max_missing_share: float) -> Dataset:
    """Validate the CSV; publishes the validation report; raises DataValidationError on hard failures."""
    dataset = load_csv(path, max_invalid_share, max_missing_share)
    report = dataset.report
    get_run_logger().info("validated %s: %s", source, report.summary())
    create_markdown_artifact(
        markdown=validation_markdown(report, source),
        key="data-validation-report",
        description="Training data validation report",
    )
    create_table_artifact(
        table=[{"class": k, "rows": v} for k, v in report.class_balance.items()],
        key="data-class-balance",
        description="Class balance of the kept rows",
    )
    return dataset
