"""Flow `monitor`: the service's prediction log joined to confirmed diagnoses; realised performance per model
version; the joined cases become training data for the next nightly; the latest inputs watched for drift."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from oncology_pipeline.driftwatch import DriftWatch
from oncology_pipeline.performance import Performance, joined_cases, logged_cases
from oncology_pipeline.settings import Overrides, load_settings
from tasks.monitor import (
    add_labelled_cases,
    check_outcomes,
    read_outcome_files,
    read_prediction_log,
    report_performance,
    watch_drift,
)
from tasks.runs import pipeline_flow, stamp_run


@dataclass(frozen=True)
class MonitorOutcome:
    """What one monitor run found and wrote."""

    records: int
    joined: int
    alarms: list[str]
    labelled: str | None
    s3_uris: list[str]
    performance: Performance
    drift: DriftWatch


@pipeline_flow("monitor")
def monitor(
    lookback_days: float | None = None, drift_hours: float | None = None, overrides: Overrides = None
) -> MonitorOutcome:
    """Join the prediction log of the last `lookback_days` (default: setting `monitor_lookback_days`) to every
    confirmed diagnosis, the deploy verification's requests set aside (counted per version); report realised
    performance per model version (alarm when a version's recall is credibly below the gate); add the joined cases
    no labelled file holds yet to the training data; judge the inputs of the last `drift_hours` (default: setting
    `drift_window_hours`) against the training data (alarm on drift).

    Args:
        lookback_days: how far back predictions are joined to outcomes.
        drift_hours: the window of latest predictions the drift watch judges (at most `lookback_days`).
        overrides: settings for this run (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings(overrides)
    lookback = timedelta(days=lookback_days or settings.monitor_lookback_days)
    recent = timedelta(hours=drift_hours or settings.drift_window_hours)
    if recent > lookback:
        raise ValueError(f"drift_hours: the drift window ({recent}) must lie within the lookback ({lookback})")
    run = stamp_run(None)
    now = datetime.now(UTC)
    window = read_prediction_log(settings, now - lookback, now)
    cases = logged_cases(window.records)
    outcomes, _ = check_outcomes(read_outcome_files(settings), cases)
    performance, written = report_performance(settings, run, cases, outcomes, window, now)
    new_file, new_cases = add_labelled_cases(settings, run, joined_cases(cases, outcomes))
    drift, drift_written = watch_drift(settings, run, cases, (now - recent, now), now, new_cases, new_file)
    return MonitorOutcome(
        records=len(window.records),
        joined=performance.outcomes_joined,
        alarms=performance.alarms,
        labelled=new_file,
        s3_uris=[*written, *([new_file] if new_file else []), *drift_written],
        performance=performance,
        drift=drift,
    )


if __name__ == "__main__":
    monitor()
