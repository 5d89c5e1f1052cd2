"""Monitor tasks: the prediction log joined to confirmed diagnoses, realised performance, new labelled cases."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from oncology_pipeline import labelled, layout, predictionlog, s3store
from oncology_pipeline.outcomes import Outcome, OutcomesReport, read_outcomes
from oncology_pipeline.performance import JoinedCase, LoggedCases, Performance, measure_performance
from oncology_pipeline.reports import outcomes_markdown, performance_markdown
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client
from tasks.policy import NETWORK_RETRIES

#: The event a realised-recall alarm emits (one per model version); `alerts` turns it into a notification.
RECALL_ALARM_EVENT = "oncology.monitor.recall-below-gate"


@task(name="read_prediction_log", tags=["monitor"], cache_policy=NO_CACHE, **NETWORK_RETRIES)
def read_prediction_log(settings: PipelineSettings, start: datetime, end: datetime) -> predictionlog.LogWindow:
    """The prediction log's records of `[start, end)`."""
    window = predictionlog.read_window(
        aws_client(settings, "s3"), settings.prediction_log_bucket, settings.prediction_log_prefix, start, end
    )
    log = get_run_logger()
    log.info("prediction log %s .. %s: %d records in %d objects", start, end, len(window.records), window.objects)
    for problem in window.unreadable:
        log.warning("unreadable prediction log object: %s", problem)
    return window


@task(name="read_outcome_files", tags=["monitor"], cache_policy=NO_CACHE, **NETWORK_RETRIES)
def read_outcome_files(settings: PipelineSettings) -> list[tuple[str, bytes]]:
    """Every outcomes file, as (s3 uri, bytes), by key."""
    s3 = aws_client(settings, "s3")
    found = s3store.list_objects(s3, settings.data_bucket, settings.outcomes_prefix)
    files = [(o.uri, s3store.get_bytes(s3, o.bucket, o.key) or b"") for o in found]
    get_run_logger().info(
        "%d outcomes files under s3://%s/%s/", len(files), settings.data_bucket, settings.outcomes_prefix
    )
    return files


@task(name="check_outcomes", tags=["monitor"], cache_policy=NO_CACHE)
def check_outcomes(files: list[tuple[str, bytes]], cases: LoggedCases) -> tuple[dict[str, Outcome], OutcomesReport]:
    """The usable outcomes (by case id) and the report of every file refused or row not used."""
    outcomes, report = read_outcomes(files, cases.prediction_times())
    get_run_logger().info("outcomes: %s", report.summary())
    create_markdown_artifact(markdown=outcomes_markdown(report), key="outcomes", description="Confirmed diagnoses")
    return outcomes, report


@task(name="report_performance", tags=["monitor"], cache_policy=NO_CACHE, **NETWORK_RETRIES)
def report_performance(
    settings: PipelineSettings,
    run: str,
    cases: LoggedCases,
    outcomes: Mapping[str, Outcome],
    window: predictionlog.LogWindow,
    now: datetime,
) -> tuple[Performance, list[str]]:
    """Realised performance per model version: the `performance` artifact, performance.json (this run's and
    `latest`), one event per version whose realised recall alarms. Returns it and the S3 URIs written."""
    performance = measure_performance(
        cases,
        outcomes,
        window_start=window.start,
        window_end=window.end,
        generated_at=now,
        min_recall=settings.gate.min_recall,
        min_malignant=settings.min_confirmed_malignant,
    )
    create_markdown_artifact(
        markdown=performance_markdown(performance), key="performance", description="Realised performance"
    )
    s3 = aws_client(settings, "s3")
    body = performance.model_dump(mode="json")
    written = [
        s3store.put_json(s3, settings.metrics_bucket, layout.monitoring_key(name, "performance.json"), body).uri
        for name in (run, "latest")
    ]
    for version in performance.versions:
        if version.recall_alarm:
            rate = version.sensitivity
            emit_event(
                event=RECALL_ALARM_EVENT,
                resource={
                    "prefect.resource.id": f"oncology.model-version.{version.model_version}",
                    "prefect.resource.name": version.model_version,
                },
                payload={
                    "model_version": version.model_version,
                    "recall": rate.value,
                    "recall_low": rate.ci_low,
                    "recall_high": rate.ci_high,
                    "confirmed_malignant": rate.trials,
                    "min_recall": settings.gate.min_recall,
                    "window_start": window.start.isoformat(),
                    "window_end": window.end.isoformat(),
                    "performance": written[0],
                },
            )
            get_run_logger().error(
                "%s: realised recall %.3f (95 %% CI %.3f-%.3f, %d confirmed malignant) is below the gate's %.2f",
                version.model_version,
                rate.value or 0,
                rate.ci_low or 0,
                rate.ci_high or 0,
                rate.trials,
                settings.gate.min_recall,
            )
    return performance, written


@task(name="add_labelled_cases", tags=["monitor"], cache_policy=NO_CACHE, **NETWORK_RETRIES)
def add_labelled_cases(settings: PipelineSettings, run: str, cases: list[JoinedCase]) -> str | None:
    """Write the joined cases no labelled file holds yet as `labelled-<run>.csv` (created once: a retry of this
    run finds its own file and writes nothing); its URI, or None when there is nothing new."""
    s3 = aws_client(settings, "s3")
    key = layout.labelled_key(settings.labelled_prefix, run)
    listed = s3store.list_objects(s3, settings.data_bucket, settings.labelled_prefix)
    files = [o for o in listed if o.key != key]
    known = labelled.known_ids(s3store.get_bytes(s3, o.bucket, o.key) or b"" for o in files)
    fresh = labelled.new_cases(cases, known)
    log = get_run_logger()
    if not fresh:
        log.info("no new confirmed cases: %d joined, all in the %d labelled files", len(cases), len(files))
        return None
    uri = f"s3://{settings.data_bucket}/{key}"
    if len(files) < len(listed):  # the listing holds this run's own file
        log.info("%s exists (this run wrote it before a retry)", uri)
        return uri
    s3store.put_bytes(s3, settings.data_bucket, key, labelled.labelled_csv(fresh), "text/csv", if_match=s3store.ABSENT)
    log.info("%s: %d new confirmed cases for the next nightly", uri, len(fresh))
    return uri
