"""The monitor's drift watch: the latest window of the prediction log, per model version, judged by the drift rule
against the reference its bundle carries (`oncology_pipeline.drift`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime

import numpy as np
from pydantic import AwareDatetime, BaseModel, Field

from oncology_model.datamodel import Prediction
from oncology_model.reference import Reference
from oncology_pipeline.drift import DriftReport, assess
from oncology_pipeline.driftchart import FeatureCounts
from oncology_pipeline.performance import LoggedCases, LoggedPrediction

#: What a version's entry says when there is no reference to judge it by.
NO_REFERENCE = "not judged: no reference (its bundle predates references or is gone from S3)"


class VersionDrift(BaseModel):
    """One model version's window: its verdict and the report it rests on (None without a reference)."""

    model_version: str
    rows: int
    verdict: str
    report: DriftReport | None


class DriftWatch(BaseModel):
    """One monitor run's drift watch over `[window_start, window_end)`; drift alone never retrains: the nightly
    retrains on new confirmed cases, counted here."""

    window_start: AwareDatetime
    window_end: AwareDatetime
    generated_at: AwareDatetime
    versions: list[VersionDrift]
    new_confirmed_cases: int = Field(description="joined cases this run added to the training data")
    labelled_file: str | None


def window_cases(cases: LoggedCases, start: datetime, end: datetime) -> dict[str, list[LoggedPrediction]]:
    """The logged cases predicted in `[start, end)`, by model version (each case once: its earliest record; the deploy
    verification's requests are not among them, see `logged_cases`)."""
    by_version: dict[str, list[LoggedPrediction]] = {}
    for record in cases.cases.values():
        if start <= record.time < end:
            by_version.setdefault(record.model_version, []).append(record)
    return dict(sorted(by_version.items()))


def window_refusals(cases: LoggedCases, start: datetime, end: datetime) -> Counter[str]:
    """How many requests each model version refused as invalid in `[start, end)`."""
    return Counter(r.model_version for r in cases.refusals if start <= r.time < end)


def judge(
    version: str,
    records: list[LoggedPrediction],
    reference: Reference | None,
    *,
    alpha: float,
    min_rows: int,
    refused: int = 0,
) -> VersionDrift:
    """One version's window judged against its bundle's reference (`refused`: the requests it refused as invalid in
    the window, reported beside the verdict)."""
    if reference is None:
        return VersionDrift(model_version=version, rows=len(records), verdict=NO_REFERENCE, report=None)
    X = np.array([record.features.as_row() for record in records], dtype=np.float64).reshape(-1, 9)
    malignant = sum(record.prediction is Prediction.MALIGNANT for record in records)
    report = assess(reference, X, malignant, alpha=alpha, min_rows=min_rows)
    report.refused_requests = refused
    return VersionDrift(model_version=version, rows=len(records), verdict=report.verdict, report=report)


def watch(
    by_version: Mapping[str, list[LoggedPrediction]],
    references: Mapping[str, Reference | None],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    alpha: float,
    min_rows: int,
    new_confirmed_cases: int,
    labelled_file: str | None,
    refused: Mapping[str, int] | None = None,
) -> DriftWatch:
    """Every version's cases of the window (`window_cases`), judged against its reference (`references` holds
    each version); `refused`: requests each version refused as invalid in the window (`window_refusals`)."""
    versions = [
        judge(
            version,
            records,
            references[version],
            alpha=alpha,
            min_rows=min_rows,
            refused=(refused or {}).get(version, 0),
        )
        for version, records in by_version.items()
    ]
    return DriftWatch(
        window_start=start,
        window_end=end,
        generated_at=now,
        versions=versions,
        new_confirmed_cases=new_confirmed_cases,
        labelled_file=labelled_file,
    )


def chart_panels(report: DriftReport) -> list[FeatureCounts]:
    """The chart's panels: per feature the reference and window counts, its verdict and its figures."""
    panels = []
    for row in report.features:
        note = ""
        if row.test is not None:
            note = f"adj. p {row.test.adjusted_p:.2g}, PSI {row.test.psi:.3f} (limit {row.test.psi_limit:.3f})"
        panels.append(FeatureCounts(row.feature, row.reference_counts, row.window_counts, row.drifts, note))
    return panels
