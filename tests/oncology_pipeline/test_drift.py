"""The drift rule on the real data: false alarms on no-drift windows, detection of a 10-point shift, nothing judged
below min_rows; Holm, the merging of sparse scores, the PSI limit, bad arguments.

The rates are measured with references drawn independently of the windows (`independent`); the other tests use the
training split (stratified 80 %, seed 42, as training does). "Predicted malignant" is the label, in the reference and
in every window, so the share behaves as a well-calibrated model's would."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.stats import chi2_contingency
from sklearn.model_selection import train_test_split

from oncology_model.data import Dataset, parse_csv
from oncology_model.datamodel import FEATURES
from oncology_model.reference import Reference, make_reference
from oncology_pipeline.drift import PREDICTION, DriftReport, assess, holm, homogeneity, merge_bins, psi_limit

Window = tuple[NDArray[np.float64], int]
#: Why the 500-row target with a 559-row reference is an expected failure (docs/monitoring.md has the figures).
SHORT_OF_TARGET = (
    "with a 559-row reference the rule finds this shift in {rate} of 1,000 windows of 500 rows; no omnibus test at "
    "the Holm level can reach 90 % for every feature there: the reference's own noise caps the power"
)


@pytest.fixture(scope="module")
def data(real_csv: bytes) -> Dataset:
    return parse_csv(real_csv)


@pytest.fixture(scope="module")
def reference(data: Dataset) -> Reference:
    X_train, _, y_train, _ = train_test_split(data.X, data.y, test_size=0.2, random_state=42, stratify=data.y)
    return make_reference(X_train, y_train == 1)


def shift(data: Dataset, X: NDArray[np.float64], feature: str, rng: np.random.Generator) -> NDArray[np.float64]:
    """Move 10 percentage points of `feature`'s mass from its most common score to scores 3-5: each row at the mode
    (of all 699 rows) moves, with probability 0.10 / the mode's share, to a uniform draw from {3, 4, 5}."""
    j = FEATURES.index(feature)
    scores, counts = np.unique(data.X[:, j][~np.isnan(data.X[:, j])], return_counts=True)
    mode, mode_share = scores[np.argmax(counts)], counts.max() / len(data.X)
    moved = (X[:, j] == mode) & (rng.random(len(X)) < 0.10 / mode_share)
    shifted = X.copy()
    shifted[moved, j] = rng.integers(3, 6, int(moved.sum()))
    return shifted


def windows(data: Dataset, count: int, rows: int, seed: int, shifted: str | None = None) -> Iterator[Window]:
    """`count` windows of `rows` rows drawn with replacement from all 699 rows (missing values kept), each with its
    drawn rows' malignant labels as the model's predictions; `shifted` names a feature to shift."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        drawn = rng.integers(0, len(data.X), rows)
        X = data.X[drawn] if shifted is None else shift(data, data.X[drawn], shifted, rng)
        yield X, int(data.y[drawn].sum())


def independent(
    data: Dataset, reference_rows: int, rows: int, references: int, per_reference: int, seed: int, shifted: str = ""
) -> Iterator[tuple[Reference, NDArray[np.float64], int]]:
    """`references` references of `reference_rows` rows, each judging `per_reference` windows of `rows` rows, every
    one drawn independently with replacement from the 699 rows: the reference is a sample of the population, as a
    training split is of production traffic (a window drawn from the rows the reference is part of would look too
    much like it, and understate false alarms and power alike)."""
    rng = np.random.default_rng(seed)
    for _ in range(references):
        drawn = rng.integers(0, len(data.X), reference_rows)
        reference = make_reference(data.X[drawn], data.y[drawn] == 1)
        for _ in range(per_reference):
            X, malignant = next(windows(data, 1, rows, int(rng.integers(2**32)), shifted or None))
            yield reference, X, malignant


def test_no_drift_windows_raise_at_most_five_percent_false_alarms(data: Dataset, record_property: Any) -> None:
    alarms = sum(assess(r, X, k).verdict != "no drift" for r, X, k in independent(data, 559, 500, 25, 40, 1))

    record_property("false_alarms_of_1000_windows_of_500_rows", alarms)
    assert alarms <= 50  # measured on 1,000 windows of 50 references: 3.8 % (docs/monitoring.md)


def detected(data: Dataset, feature: str, reference_rows: int, rows: int) -> int:
    """Of 500 windows (20 references x 25), how many name `feature` after it was shifted by 10 points."""
    return sum(
        feature in assess(r, X, k).drifting for r, X, k in independent(data, reference_rows, rows, 20, 25, 2, feature)
    )


@pytest.mark.parametrize(
    "feature",
    [
        pytest.param("bare_nuclei", marks=pytest.mark.xfail(strict=True, reason=SHORT_OF_TARGET.format(rate="78.1 %"))),
        pytest.param(
            "clump_thickness", marks=pytest.mark.xfail(strict=True, reason=SHORT_OF_TARGET.format(rate="79.9 %"))
        ),
    ],
)
def test_a_ten_point_shift_is_detected_in_90_percent_of_500_row_windows(
    data: Dataset, feature: str, record_property: Any
) -> None:
    found = detected(data, feature, 559, 500)

    record_property(f"{feature}_detected_of_500_windows_of_500_rows", found)
    assert found >= 450


@pytest.mark.parametrize("feature", ["bare_nuclei", "clump_thickness"])
def test_a_2000_row_reference_finds_a_ten_point_shift_in_90_percent_of_500_row_windows(
    data: Dataset, feature: str, record_property: Any
) -> None:
    found = detected(data, feature, 2000, 500)

    record_property(f"{feature}_detected_of_500_windows_of_500_rows_2000_reference_rows", found)
    assert found >= 450  # measured on 1,000 windows: bare_nuclei 97.5 %, clump_thickness 93.6 %


@pytest.mark.parametrize("feature", ["bare_nuclei", "clump_thickness"])
def test_a_ten_point_shift_is_detected_in_90_percent_of_1000_row_windows(
    data: Dataset, feature: str, record_property: Any
) -> None:
    found = detected(data, feature, 559, 1000)

    record_property(f"{feature}_detected_of_500_windows_of_1000_rows", found)
    assert found >= 450  # measured on 1,000 windows: bare_nuclei 93.5 %, clump_thickness 93.1 %


@pytest.mark.parametrize("rows", [199, 100, 1, 0])
def test_below_min_rows_nothing_is_judged_however_shifted(reference: Reference, rows: int) -> None:
    report = assess(reference, np.full((rows, 9), 10.0), rows)

    assert report.verdict == f"insufficient data ({rows} rows, need 200)"
    assert report.drifting == []
    assert all(row.test is None and not row.drifts for row in report.features)
    assert report.prediction.test is None
    assert [row.window_counts for row in report.features] == [[0] * 9 + [rows]] * 9
    assert report.prediction.window_share == (1.0 if rows else None)


def test_min_rows_is_enough_to_judge(reference: Reference) -> None:
    report = assess(reference, np.full((200, 9), 10.0), 200)

    assert report.drifting == [*FEATURES, PREDICTION]
    assert report.verdict == f"drift: {', '.join(FEATURES)}, predicted malignant share"


def test_a_shifted_feature_is_named(data: Dataset, reference: Reference) -> None:
    X, malignant = next(windows(data, 1, 500, 7))
    X[::2, FEATURES.index("bare_nuclei")] = 5.0

    report = assess(reference, X, malignant)

    assert report.verdict == "drift: bare_nuclei"
    bare_nuclei, clump_thickness = report.features[FEATURES.index("bare_nuclei")].test, report.features[0].test
    assert bare_nuclei is not None and clump_thickness is not None
    assert bare_nuclei.adjusted_p < 0.05 < clump_thickness.adjusted_p
    assert bare_nuclei.psi > bare_nuclei.psi_limit


def test_the_predicted_malignant_share_is_the_tenth_hypothesis(data: Dataset, reference: Reference) -> None:
    X, malignant = next(windows(data, 1, 500, 7))

    assert assess(reference, X, malignant).verdict == "no drift"
    report = assess(reference, X, 300)
    assert report.verdict == "drift: predicted malignant share"
    assert report.prediction.window_share == 0.6
    assert report.prediction.reference_share == pytest.approx(reference.predicted_malignant / reference.rows)


def test_missing_values_are_reported_not_tested(data: Dataset, reference: Reference) -> None:
    complete = data.X[~np.isnan(data.X).any(axis=1)]  # the service refuses missing values
    X = complete[np.random.default_rng(3).integers(0, len(complete), 500)]

    report = assess(reference, X, 170)

    bare_nuclei = report.features[FEATURES.index("bare_nuclei")]
    assert report.verdict == "no drift"
    assert bare_nuclei.reference_missing_share == pytest.approx(reference.missing["bare_nuclei"] / reference.rows)
    assert bare_nuclei.reference_missing_share > 0.01
    assert bare_nuclei.window_missing_share == 0.0
    X[:50, FEATURES.index("bare_nuclei")] = math.nan
    with_gaps = assess(reference, X, 170).features[FEATURES.index("bare_nuclei")]
    assert with_gaps.window_missing_share == 0.1
    assert sum(with_gaps.window_counts) == 450
    assert not with_gaps.drifts


def test_holm_matches_a_hand_worked_example() -> None:
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (never below a
    # smaller p's adjusted value)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []


def test_sparse_scores_are_merged_left_to_right() -> None:
    sparse = np.array([100, 3, 2, 1, 4, 0, 0, 0, 0, 50])
    # a window of 80 rows: a bin needs a reference count of 5 x 160 / 80 = 10 for both expected counts to reach 5
    assert merge_bins(sparse, 80) == (0, 1, 5)
    # a last bin short of 5 joins the one before
    assert merge_bins(np.array([50, 50, 3, *[0] * 7]), 200) == (0, 1)
    assert merge_bins(sparse, 0) == (0,)
    reference = Reference(
        rows=160,
        counts={f: sparse.tolist() for f in FEATURES},
        missing={f: 0 for f in FEATURES},
        predicted_malignant=60,
    )
    halves = [50, 1, 1, 1, 2, 0, 0, 0, 0, 25]  # per bin exactly half the reference: 50, 5, 25
    window = np.repeat(np.arange(1.0, 11.0), halves)[:, None].repeat(9, axis=1)

    report = assess(reference, window, 30, min_rows=80)

    test = report.features[0].test
    assert test is not None
    assert (test.bins, test.dof, test.statistic) == (["1", "2-5", "6-10"], 2, 0.0)
    assert report.verdict == "no drift"


@pytest.mark.parametrize("seed", range(5))
def test_the_chi_square_is_scipys_on_the_merged_table(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference, window = rng.multinomial(400, rng.dirichlet([0.3] * 10)), rng.multinomial(300, rng.dirichlet([1] * 10))

    test = homogeneity(reference, window)

    expected = chi2_contingency(np.add.reduceat(np.stack([reference, window]), test.starts, axis=1), correction=False)
    assert len(test.starts) > 2
    assert (test.statistic, test.p_value, test.dof) == pytest.approx(
        (expected.statistic, expected.pvalue, expected.dof)
    )


def test_the_psi_limit_is_seeded_shrinks_with_the_window_and_keeps_the_references_noise(
    reference: Reference,
) -> None:
    counts = tuple(reference.counts["clump_thickness"])

    limits = [psi_limit(counts, rows, 0) for rows in (200, 500, 559, 10**6)]

    assert limits == sorted(limits, reverse=True)
    assert psi_limit.__wrapped__(counts, 500, 0) == limits[1]
    # PSI's null spread goes as 1/reference rows + 1/window rows: a huge window halves it, never removes it
    assert 0.4 < limits[3] / limits[2] < 0.6


@pytest.mark.parametrize(
    ("window", "malignant", "options", "message"),
    [
        (np.ones((500, 8)), 0, {}, r"window must have 9 columns \(clump_thickness, .*\), got shape \(500, 8\)"),
        (np.hstack([np.ones((3, 7)), [[1, 1], [1, 11], [1, 1]]]), 0, {}, "window column mitoses: scores must be "),
        (np.full((3, 9), 2.5), 0, {}, "window column clump_thickness: .* row 0 is 2.5"),
        (np.ones((3, 9)), 4, {}, "predicted_malignant must be between 0 and the window's 3 rows, got 4"),
        (np.ones((3, 9)), -1, {}, "predicted_malignant must be between 0 and the window's 3 rows, got -1"),
        (np.ones((3, 9)), True, {}, "predicted_malignant must be an integer, got True"),
        (np.ones((3, 9)), 1.0, {}, "predicted_malignant must be an integer, got 1.0"),
        (np.ones((3, 9)), 0, {"alpha": 0.0}, r"alpha must be between 0 and 1 \(exclusive\), got 0.0"),
        (np.ones((3, 9)), 0, {"alpha": 1.0}, "alpha must be between 0 and 1"),
        (np.ones((3, 9)), 0, {"min_rows": 0}, "min_rows must be at least 1, got 0"),
    ],
)
def test_bad_arguments_are_refused_naming_the_rule(
    reference: Reference, window: NDArray[np.float64], malignant: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        assess(reference, window, malignant, **options)


def test_the_report_round_trips_through_json_and_states_its_rule(data: Dataset, reference: Reference) -> None:
    X, malignant = next(windows(data, 1, 500, 7))
    report = assess(reference, X, malignant, alpha=0.01, min_rows=300)

    assert DriftReport.model_validate_json(report.model_dump_json()) == report
    assert report.model_dump()["features"][0]["drifts"] is False
    assert "at least 300 rows" in report.rule
    assert "below 0.01" in report.rule
    assert report.refused_requests is None
