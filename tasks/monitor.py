"""Monitor tasks: the prediction log joined to confirmed diagnoses, realised performance, new labelled cases."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from oncology_model.bundle import METADATA_FILE, ModelMetadata
from oncology_model.reference import Reference
from oncology_pipeline import driftwatch, labelled, layout, predictionlog, s3store
from oncology_pipeline.driftchart import drift_svg
from oncology_pipeline.events import DRIFT_EVENT, RECALL_ALARM_EVENT, version_resource
from oncology_pipeline.outcomes import Outcome, OutcomesReport, read_outcomes
from oncology_pipeline.performance import JoinedCase, LoggedCases, Performance, measure_performance
from oncology_pipeline.reports import drift_markdown, outcomes_markdown, performance_markdown
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client
from tasks.policy import NETWORK_RETRIES

#: How long the drift chart's presigned link in the artifact works (SigV4's longest).
CHART_LINK_SECONDS = 7 * 24 * 3600


@task(name="read_prediction_log", cache_policy=NO_CACHE, **NETWORK_RETRIES)
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


@task(name="read_outcome_files", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def read_outcome_files(settings: PipelineSettings) -> list[tuple[str, bytes]]:
    """Every outcomes file, as (s3 uri, bytes), by key."""
    s3 = aws_client(settings, "s3")
    found = s3store.list_objects(s3, settings.data_bucket, settings.outcomes_prefix)
    files = [(o.uri, s3store.get_bytes(s3, o.bucket, o.key) or b"") for o in found]
    get_run_logger().info(
        "%d outcomes files under %s", len(files), layout.uri(settings.data_bucket, f"{settings.outcomes_prefix}/")
    )
    return files


@task(name="check_outcomes", cache_policy=NO_CACHE)
def check_outcomes(files: list[tuple[str, bytes]], cases: LoggedCases) -> tuple[dict[str, Outcome], OutcomesReport]:
    """The usable outcomes (by case id) and the report of every file refused or row not used."""
    outcomes, report = read_outcomes(files, cases.prediction_times())
    get_run_logger().info("outcomes: %s", report.summary())
    create_markdown_artifact(markdown=outcomes_markdown(report), key="outcomes", description="Confirmed diagnoses")
    return outcomes, report


@task(name="report_performance", cache_policy=NO_CACHE, **NETWORK_RETRIES)
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
    for version in performance.versions:
        if version.verification_records:
            get_run_logger().info(
                "%s: %d records of the deploy verification set aside: not served, joined or watched for drift",
                version.model_version,
                version.verification_records,
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
                resource=version_resource(version.model_version),
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


@task(name="add_labelled_cases", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def add_labelled_cases(settings: PipelineSettings, run: str, cases: list[JoinedCase]) -> tuple[str | None, int]:
    """Write the joined cases no labelled file holds yet as `labelled-<run>.csv` (created once: a retry of this
    run finds its own file and writes nothing); its URI (None when there is nothing new) and how many cases."""
    s3 = aws_client(settings, "s3")
    key = layout.labelled_key(settings.labelled_prefix, run)
    listed = s3store.list_objects(s3, settings.data_bucket, settings.labelled_prefix)
    files = [o for o in listed if o.key != key]
    known = labelled.known_ids(s3store.get_bytes(s3, o.bucket, o.key) or b"" for o in files)
    fresh = labelled.new_cases(cases, known)
    log = get_run_logger()
    if not fresh:
        log.info("no new confirmed cases: %d joined, all in the %d labelled files", len(cases), len(files))
        return None, 0
    uri = layout.uri(settings.data_bucket, key)
    if len(files) < len(listed):  # the listing holds this run's own file
        log.info("%s exists (this run wrote it before a retry)", uri)
        return uri, len(fresh)
    s3store.put_bytes(s3, settings.data_bucket, key, labelled.labelled_csv(fresh), "text/csv", if_match=s3store.ABSENT)
    log.info("%s: %d new confirmed cases for the next nightly", uri, len(fresh))
    return uri, len(fresh)


def _reference(s3: Any, settings: PipelineSettings, version: str) -> Reference | None:
    """The drift reference in the version's bundle metadata (None when the bundle has none or is gone)."""
    key = layout.bundle_key(settings.model_prefix, version, METADATA_FILE)
    data = s3store.get_bytes(s3, settings.model_bucket, key)
    if data is None:
        get_run_logger().warning("%s is gone: %s is not judged", layout.uri(settings.model_bucket, key), version)
        return None
    return ModelMetadata.model_validate_json(data).reference


@task(name="watch_drift", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def watch_drift(
    settings: PipelineSettings,
    run: str,
    cases: LoggedCases,
    window: tuple[datetime, datetime],
    now: datetime,
    new_cases: int,
    labelled_file: str | None,
) -> tuple[driftwatch.DriftWatch, list[str]]:
    """The inputs of `window` per model version against its bundle's reference: drift.json (this run's and
    `latest`), a chart per version (SVG in S3, shown as an image artifact), the `drift` artifact, and one event
    per drifting version. Returns the watch and the S3 URIs written."""
    s3 = aws_client(settings, "s3")
    start, end = window
    versions = driftwatch.window_cases(cases, start, end)
    watch = driftwatch.watch(
        versions,
        {version: _reference(s3, settings, version) for version in versions},
        start=start,
        end=end,
        now=now,
        alpha=settings.drift_alpha,
        min_rows=settings.drift_min_rows,
        new_confirmed_cases=new_cases,
        labelled_file=labelled_file,
        refused=driftwatch.window_refusals(cases, start, end),
    )
    written, charts = [], {}
    for version in watch.versions:
        if version.report is None:
            continue
        title = f"{version.model_version} · {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC · {version.verdict}"
        svg = drift_svg(driftwatch.chart_panels(version.report), title=title).encode()
        key = layout.monitoring_key(run, f"drift-{version.model_version}.svg")
        written.append(s3store.put_bytes(s3, settings.metrics_bucket, key, svg, "image/svg+xml").uri)
        charts[version.model_version] = s3.generate_presigned_url(
            "get_object", Params={"Bucket": settings.metrics_bucket, "Key": key}, ExpiresIn=CHART_LINK_SECONDS
        )
        create_image_artifact(
            image_url=charts[version.model_version],
            key="drift-chart",
            description=f"{version.model_version}: reference vs window per feature ({version.verdict})",
        )
    body = watch.model_dump(mode="json")
    json_uris = [
        s3store.put_json(s3, settings.metrics_bucket, layout.monitoring_key(name, "drift.json"), body).uri
        for name in (run, "latest")
    ]
    create_markdown_artifact(markdown=drift_markdown(watch, charts), key="drift", description="Input drift")
    log = get_run_logger()
    for version in watch.versions:
        log.info("drift %s: %s (%d rows)", version.model_version, version.verdict, version.rows)
    for version in watch.versions:
        if version.report is None or not version.report.drifting:
            continue
        emit_event(
            event=DRIFT_EVENT,
            resource=version_resource(version.model_version),
            payload={
                "model_version": version.model_version,
                "features": ", ".join(version.report.drifting),
                "rows": version.rows,
                "alpha": version.report.alpha,
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "new_confirmed_cases": new_cases,
                "drift": json_uris[0],
            },
        )
        log.error(
            "%s: input drift in %s over %s .. %s (%d rows); retraining waits for confirmed cases (%d new this run)",
            version.model_version,
            ", ".join(version.report.drifting),
            start.isoformat(),
            end.isoformat(),
            version.rows,
            new_cases,
        )
    return watch, [*json_uris, *written]
