"""Flow `monitor`: the service's prediction log joined to confirmed diagnoses; realised performance per model
version; the joined cases become training data for the next nightly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, tags

from oncology_pipeline.performance import Performance, joined_cases, logged_cases
from oncology_pipeline.settings import load_settings
from tasks.monitor import (
    add_labelled_cases,
    check_outcomes,
    read_outcome_files,
    read_prediction_log,
    report_performance,
)
from tasks.runs import run_name, stamp_run


@dataclass(frozen=True)
class MonitorOutcome:
    """What one monitor run found and wrote."""

    records: int
    joined: int
    alarms: list[str]
    labelled: str | None
    s3_uris: list[str]
    performance: Performance


@flow(
    name="monitor",
    flow_run_name=run_name("monitor"),
    log_prints=False,
    timeout_seconds=load_settings().stage_timeout_seconds,
)
def monitor(lookback_days: float | None = None, overrides: dict[str, Any] | None = None) -> MonitorOutcome:
    """Join the prediction log of the last `lookback_days` (default: setting `monitor_lookback_days`) to every
    confirmed diagnosis; report realised performance per model version (alarm when a version's recall is
    credibly below the gate); add the joined cases no labelled file holds yet to the training data.

    Args:
        lookback_days: how far back predictions are joined to outcomes.
        overrides: settings for this run (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings(overrides)
    run = stamp_run("monitor", None)
    now = datetime.now(UTC)
    start = now - timedelta(days=lookback_days or settings.monitor_lookback_days)
    with tags("monitor"):
        window = read_prediction_log(settings, start, now)
        cases = logged_cases(window.records)
        outcomes, _ = check_outcomes(read_outcome_files(settings), cases)
        performance, written = report_performance(settings, run, cases, outcomes, window, now)
        new_file = add_labelled_cases(settings, run, joined_cases(cases, outcomes))
    return MonitorOutcome(
        records=len(window.records),
        joined=performance.outcomes_joined,
        alarms=performance.alarms,
        labelled=new_file,
        s3_uris=[*written, *([new_file] if new_file else [])],
        performance=performance,
    )


if __name__ == "__main__":
    monitor()
