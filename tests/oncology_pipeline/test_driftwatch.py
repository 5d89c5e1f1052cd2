"""The drift watch: the window's cases by version, each judged against its own reference, and the drift report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from oncology_model.data import parse_csv
from oncology_model.datamodel import FEATURES
from oncology_model.reference import make_reference
from oncology_pipeline.driftwatch import NO_REFERENCE, chart_panels, watch, window_cases, window_refusals
from oncology_pipeline.performance import logged_cases
from oncology_pipeline.reports import drift_markdown

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def _record(request: str, version: str, row: np.ndarray, age: timedelta, malignant: bool) -> dict[str, object]:
    return {
        "request_id": request,
        "row": None,
        "time": (NOW - age).isoformat(),
        "model_version": version,
        "image_digest": None,
        "features": dict(zip(FEATURES, map(int, row), strict=True)),
        "prediction": "malignant" if malignant else "benign",
        "probability_malignant": 0.9 if malignant else 0.1,
    }


def test_only_the_windows_cases_are_judged_each_against_its_versions_reference(real_csv: bytes) -> None:
    data = parse_csv(real_csv)
    complete = ~np.isnan(data.X).any(axis=1)
    rows, labels = data.X[complete], data.y[complete]
    reference = make_reference(rows, labels == 1)
    drawn = np.random.default_rng(5).permutation(len(rows))[:250]  # a sample of the same population
    records = [_record(f"a-{n}", "v-a", rows[i], timedelta(hours=1), bool(labels[i])) for n, i in enumerate(drawn)]
    records += [_record(f"old-{n}", "v-a", rows[n], timedelta(hours=30), False) for n in range(40)]  # outside
    records += [_record(f"b-{n}", "v-b", rows[n], timedelta(hours=2), False) for n in range(30)]
    records += [records[0]]  # a repeated case counts once
    # The deploy verifications of v-a and of v-c (nothing else served yet): all malignant, never in the window.
    records += [
        _record(f"verify-{v}-0a1b2c3d", v, rows[n], timedelta(hours=1), True) | {"row": n}
        for v in ("v-a", "v-c")
        for n in range(140)
    ]
    # Requests refused as invalid: 10 of v-a in the window, 3 before it, and one of a verification (not counted).
    refusal = {"row": None, "image_digest": None}
    records += [
        refusal
        | {"request_id": f"bad-{n}", "time": (NOW - timedelta(hours=h)).isoformat(), "model_version": "v-a"}
        | {"refused": 422 if n % 2 else 400}
        for n, h in enumerate([1] * 10 + [30] * 3)
    ]
    records += [
        refusal | {"request_id": "verify-v-a-1", "time": NOW.isoformat(), "model_version": "v-a", "refused": 422}
    ]
    records += [refusal | {"request_id": "odd", "time": NOW.isoformat(), "model_version": "v-a", "refused": 500}]
    cases = logged_cases(records)
    start = NOW - timedelta(hours=24)
    assert (len(cases.refusals), cases.invalid) == (13, 1)
    assert cases.problems[0].startswith(f"record {len(records)}: refused:")
    assert window_refusals(cases, start, NOW) == {"v-a": 10}

    by_version = window_cases(cases, start, NOW)
    assert {v: len(r) for v, r in by_version.items()} == {"v-a": 250, "v-b": 30}
    result = watch(
        by_version,
        {"v-a": reference, "v-b": None},
        start=start,
        end=NOW,
        now=NOW,
        alpha=0.05,
        min_rows=200,
        new_confirmed_cases=7,
        labelled_file="s3://data/labelled/labelled-x.csv",
        refused=window_refusals(cases, start, NOW),
    )
    a, b = result.versions
    assert (a.model_version, a.rows, a.verdict) == ("v-a", 250, "no drift")
    assert (b.model_version, b.verdict, b.report) == ("v-b", NO_REFERENCE, None)
    assert a.report is not None and a.report.refused_requests == 10
    panels = chart_panels(a.report)
    assert [p.name for p in panels] == list(FEATURES) and not any(p.drifts for p in panels)
    assert sum(panels[0].current) == 250 and "PSI" in panels[0].note

    text = drift_markdown(result, {"v-a": "http://chart"})
    assert "## v-a: no drift (250 rows)" in text and f"## v-b: {NO_REFERENCE} (30 rows)" in text
    assert "[Reference vs window, per feature (chart)](http://chart)" in text
    assert "**7** (s3://data/labelled/labelled-x.csv)" in text
    assert "Requests refused as invalid (HTTP 400/422): **10** of 260 (3.8%)" in text
    assert text.count("| no drift |") == 10  # nine features and the predicted share
