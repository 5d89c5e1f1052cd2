"""Realised performance: the log joined to outcomes per model version, Wilson intervals, the recall alarm."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, Prediction
from oncology_pipeline.outcomes import Outcome, Rule, read_outcomes
from oncology_pipeline.performance import (
    Performance,
    VersionPerformance,
    joined_cases,
    logged_cases,
    measure_performance,
    recall_alarm,
    wilson_rate,
)
from oncology_pipeline.reports import performance_markdown

OLD, NEW = "20261125T020000Z-402c5853", "20261202T020000Z-9b1e77a0"
T0 = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
Z = 1.959963984540054  # the 97.5 % quantile of the standard normal distribution


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval in closed form (no continuity correction)."""
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


def record(case: int, version: str, prediction: str, minutes: int = 0, row: int | None = None) -> dict[str, Any]:
    scores = EXAMPLE_MALIGNANT if prediction == "malignant" else EXAMPLE_BENIGN
    return {
        "request_id": f"req-{case}",
        "row": row,
        "time": (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        "model_version": version,
        "image_digest": None,
        "features": dict(scores),
        "prediction": prediction,
        "probability_malignant": 0.9 if prediction == "malignant" else 0.1,
    }


def outcome(case: str, diagnosis: Prediction, hours: float) -> Outcome:
    return Outcome(case_id=case, diagnosis=diagnosis, confirmed_at=T0 + timedelta(hours=hours), file="o.csv", row=2)


def known_join() -> tuple[list[dict[str, Any]], dict[str, Outcome]]:
    """OLD: 60 served, 50 confirmed (tp 18, fn 2, tn 27, fp 3), hours to outcome 1..50. NEW: 5 served as rows of
    one batch, 2 confirmed (one tp, one fn), 24 and 48 hours."""
    kinds = [("malignant", Prediction.MALIGNANT)] * 18 + [("benign", Prediction.MALIGNANT)] * 2
    kinds += [("benign", Prediction.BENIGN)] * 27 + [("malignant", Prediction.BENIGN)] * 3
    records = [record(i, OLD, answer) for i, (answer, _) in enumerate(kinds)]
    outcomes = {f"req-{i}": outcome(f"req-{i}", truth, i + 1) for i, (_, truth) in enumerate(kinds)}
    records += [record(100 + i, OLD, "benign") for i in range(10)]  # no outcome yet
    records += [record(200, NEW, "malignant" if i == 0 else "benign", row=i) for i in range(5)]
    outcomes["req-200/0"] = outcome("req-200/0", Prediction.MALIGNANT, 24)
    outcomes["req-200/1"] = outcome("req-200/1", Prediction.MALIGNANT, 48)
    return records, outcomes


def measure(records: list[dict[str, Any]], outcomes: dict[str, Outcome], min_recall: float = 0.95) -> Performance:
    return measure_performance(
        logged_cases(records),
        outcomes,
        window_start=T0,
        window_end=T0 + timedelta(hours=24),
        generated_at=T0 + timedelta(days=3),
        min_recall=min_recall,
        min_malignant=20,
    )


def test_the_join_counts_each_version_apart_with_wilson_intervals() -> None:
    performance = measure(*known_join())

    old, new = performance.versions
    assert (old.model_version, old.served, old.confirmed) == (OLD, 60, 50)
    assert old.confirmed_share == pytest.approx(50 / 60)
    assert (old.tp, old.fn, old.tn, old.fp) == (18, 2, 27, 3)
    for rate, (k, n) in ((old.sensitivity, (18, 20)), (old.specificity, (27, 30)), (old.precision, (18, 21))):
        assert (rate.successes, rate.trials) == (k, n)
        assert rate.value == pytest.approx(k / n)
        assert (rate.ci_low, rate.ci_high) == pytest.approx(wilson(k, n), abs=1e-9)
    assert old.hours_to_outcome_median == pytest.approx(25.5)
    assert old.hours_to_outcome_p90 == pytest.approx(45.1)  # linear interpolation between 45 and 46
    assert (new.model_version, new.served, new.confirmed, new.tp, new.fn, new.tn, new.fp) == (NEW, 5, 2, 1, 1, 0, 0)
    assert new.specificity.value is None and new.specificity.ci_low is None and new.specificity.ci_high is None
    assert (new.hours_to_outcome_median, new.hours_to_outcome_p90) == pytest.approx((36.0, 45.6))
    assert (performance.outcomes_joined, performance.outcomes_not_joined) == (52, 0)
    assert Performance.model_validate_json(performance.model_dump_json()) == performance


def test_the_log_counts_invalid_repeated_and_ambiguous_records_and_leaves_them_out() -> None:
    bad_score = record(1, OLD, "benign") | {"features": dict(EXAMPLE_BENIGN) | {"mitoses": 11}}
    bool_row = record(2, OLD, "benign") | {"row": True}
    no_time = {k: v for k, v in record(3, OLD, "benign").items() if k != "time"}
    records = [
        bad_score,
        bool_row,
        no_time,
        record(4, OLD, "malignant", minutes=5),
        record(4, OLD, "malignant", minutes=1),  # a retry with the same request id: one case, the earlier time
        record(5, OLD, "benign"),
        record(5, NEW, "malignant"),  # the same id answered by two versions: ambiguous
    ]
    outcomes = {
        "req-4": outcome("req-4", Prediction.MALIGNANT, 2),
        "req-5": outcome("req-5", Prediction.MALIGNANT, 2),
    }

    log = logged_cases(records)
    performance = measure(records, outcomes)

    assert (log.records, log.invalid, log.repeated, log.ambiguous) == (7, 3, 2, frozenset({"req-5"}))
    assert log.problems[0] == "record 1: features.mitoses: Input should be less than or equal to 10"
    assert log.problems[1].startswith("record 2: row:")
    assert log.problems[2] == "record 3: time: Field required"
    assert log.prediction_times()["req-4"] == T0 + timedelta(minutes=1)
    assert [(v.model_version, v.served, v.confirmed) for v in performance.versions] == [(OLD, 2, 1), (NEW, 1, 0)]
    assert (performance.outcomes_joined, performance.outcomes_not_joined, performance.ambiguous_cases) == (1, 1, 1)
    [joined] = joined_cases(log, outcomes)
    assert (joined.case_id, joined.features, joined.diagnosis) == ("req-4", EXAMPLE_MALIGNANT, 4)


def test_the_deploy_verifications_records_are_counted_per_version_and_in_no_other_figure() -> None:
    records, outcomes = known_join()
    fresh = "20261210T020000Z-00000001"  # just deployed: nothing but its verification yet
    golden = [
        record(0, version, "malignant", row=row) | {"request_id": f"verify-{version}-0a1b2c3d"}
        for version, rows in ((OLD, 2), (NEW, 3), (fresh, 4))
        for row in range(rows)
    ]
    golden.append(golden[-1])  # a retried verification logs its rows again: records are counted, not cases
    verify_case = f"verify-{NEW}-0a1b2c3d/1"
    lab = f"request_id,diagnosis,confirmed_at\nreq-0,4,2026-12-05T00:00:00Z\n{verify_case},4,2026-12-05T00:00:00Z\n"

    log = logged_cases(records + golden)
    used, report = read_outcomes([("lab.csv", lab.encode())], log.prediction_times())
    performance = measure(records + golden, outcomes | {verify_case: outcome(verify_case, Prediction.MALIGNANT, 2)})

    assert log.verification == {OLD: 2, NEW: 3, fresh: 5}
    assert (log.records, log.repeated, len(log.cases)) == (len(records) + 10, 0, len(records))
    assert list(used) == ["req-0"]
    [problem] = report.problems
    assert (problem.file, problem.row, problem.rule) == ("lab.csv", 3, Rule.VERIFICATION_CASE)
    assert "'verify-" in problem.detail
    assert [(v.model_version, v.served, v.verification_records, v.confirmed) for v in performance.versions] == [
        (OLD, 60, 2, 50),
        (NEW, 5, 3, 2),
        (fresh, 0, 5, 0),
    ]
    assert (performance.outcomes_joined, performance.outcomes_not_joined) == (52, 1)
    assert performance.versions[2].confirmed_share == 0.0 and performance.versions[2].sensitivity.value is None
    assert not any(case.case_id.startswith("verify-") for case in joined_cases(log, outcomes))


def _with_recall(k: int, n: int) -> VersionPerformance:
    empty = wilson_rate(0, 0)
    return VersionPerformance(
        model_version=OLD,
        served=n,
        verification_records=0,
        confirmed=n,
        confirmed_share=1.0,
        tp=k,
        fn=n - k,
        tn=0,
        fp=0,
        sensitivity=wilson_rate(k, n),
        specificity=empty,
        precision=wilson_rate(k, k),
        hours_to_outcome_median=None,
        hours_to_outcome_p90=None,
    )


@pytest.mark.parametrize(
    ("k", "n", "min_malignant", "alarm"),
    [
        (20, 30, 30, True),  # recall 0.67, upper bound 0.81 < 0.95
        (20, 30, 31, False),  # as bad, but fewer confirmed malignant cases than asked for
        (29, 30, 30, False),  # recall 0.97, upper bound 0.99: not below 0.95
        (0, 0, 0, False),  # no malignant case: no interval, no alarm
    ],
)
def test_recall_alarm_needs_enough_malignant_cases_and_an_upper_bound_below_min_recall(
    k: int, n: int, min_malignant: int, alarm: bool
) -> None:
    assert recall_alarm(_with_recall(k, n), min_recall=0.95, min_malignant=min_malignant) is alarm


def test_measure_performance_decides_the_alarm_per_version() -> None:
    # OLD's recall 18/20 has the upper bound 0.972: below 0.98, not below 0.97; NEW has 2 malignant cases (< 20)
    assert wilson(18, 20)[1] == pytest.approx(0.9721, abs=1e-4)

    assert measure(*known_join(), min_recall=0.98).alarms == [OLD]
    assert measure(*known_join(), min_recall=0.97).alarms == []


def test_performance_markdown_shows_each_versions_figures_the_method_and_the_rule() -> None:
    text = performance_markdown(measure(*known_join(), min_recall=0.98))
    lines = text.splitlines()
    low, high = wilson(18, 20)

    assert f"## {OLD}: RECALL ALARM" in lines
    assert f"## {NEW}" in lines
    assert "| served | 60 |" in lines
    assert "| deploy verification records (set aside) | 0 |" in lines
    assert "| confirmed | 50 |" in lines
    assert "| share confirmed | 83.3% |" in lines
    assert f"| sensitivity (realised recall) | 0.900 [{low:.3f}, {high:.3f}] (18/20) |" in lines
    assert "| specificity | n/a (0/0) |" in lines
    assert "| hours to outcome, median / p90 | 25.5 / 45.1 |" in lines
    assert "| tp / fn / tn / fp | 18 / 2 / 27 / 3 |" in lines
    assert "Wilson score interval" in text
    assert "at least 20 confirmed malignant cases" in text
    assert "below 0.98" in text
