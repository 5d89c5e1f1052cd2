"""Data stage: download the training CSV and the labelled cases from S3 (ETag-cached), validate each file and
combine them into the data set the model trains on."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from oncology_model.data import Dataset, combine, load_csv
from oncology_pipeline import layout, s3store
from oncology_pipeline.reports import class_balance_rows, validation_markdown
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client
from tasks.policy import NETWORK_RETRIES


@task(name="download_training_data", cache_policy=NO_CACHE, **NETWORK_RETRIES)
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


@task(name="download_labelled_data", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def download_labelled_data(settings: PipelineSettings) -> list[s3store.CachedDownload]:
    """Download every file under the labelled prefix (sorted by key) that the local cache lacks by ETag."""
    start = time.perf_counter()
    s3 = aws_client(settings, "s3")
    listed = s3store.list_objects(s3, settings.data_bucket, settings.labelled_prefix)
    results = [s3store.download_listed(s3, obj, settings.cache_dir) for obj in listed if obj.key != settings.data_key]
    get_run_logger().info(
        "%s: %d labelled files, %d downloaded, %d from the cache (same ETag), %.2f s",
        layout.uri(settings.data_bucket, f"{settings.labelled_prefix}/"),
        len(results),
        sum(r.downloaded for r in results),
        sum(not r.downloaded for r in results),
        time.perf_counter() - start,
    )
    return results


@task(name="validate_data", cache_policy=NO_CACHE)
def validate_data(
    training: s3store.CachedDownload,
    labelled: list[s3store.CachedDownload],
    max_invalid_share: float,
    max_missing_share: float,
) -> Dataset:
    """Validate each file on its own (a file of labelled cases may hold one class), then combine them; publishes
    the validation report; raises DataValidationError, naming the file, on hard failures."""
    datasets = [load_csv(training.path, max_invalid_share, max_missing_share, source=training.source.uri)]
    datasets += [
        load_csv(f.path, max_invalid_share, max_missing_share, source=f.source.uri, need_both_classes=False)
        for f in labelled
    ]
    dataset = combine(datasets)
    report = dataset.report
    source = training.source.uri + (f" and {len(labelled)} labelled files" if labelled else "")
    get_run_logger().info("validated %s: %s", source, report.summary())
    create_markdown_artifact(
        markdown=validation_markdown(report, source),
        key="data-validation-report",
        description="Training data validation report",
    )
    create_table_artifact(
        table=class_balance_rows(report),
        key="data-class-balance",
        description="Class balance of the kept rows",
    )
    return dataset
