"""The drift reference: counts per score and missing values, JSON round trip, refusal of inconsistent totals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from oncology_model.data import Dataset
from oncology_model.datamodel import FEATURES
from oncology_model.reference import Reference, make_reference, score_counts

NAN = math.nan


def _fields(**changes: Any) -> dict[str, Any]:
    """A consistent two-row reference's fields (row 1: all 1s; row 2: all 10s, bare_nuclei missing), changed."""
    counts = {feature: [1, 0, 0, 0, 0, 0, 0, 0, 0, 1] for feature in FEATURES}
    counts["bare_nuclei"] = [1, *[0] * 9]
    missing = {feature: 0 for feature in FEATURES} | {"bare_nuclei": 1}
    return {"rows": 2, "counts": counts, "missing": missing, "predicted_malignant": 1} | changes


def test_counts_per_score_and_missing_values_add_up_to_the_rows(real_dataset: Dataset) -> None:
    reference = make_reference(real_dataset.X, real_dataset.y == 1)

    assert reference.rows == 699
    for j, feature in enumerate(FEATURES):
        column = real_dataset.X[:, j]
        assert reference.counts[feature] == [int((column == score).sum()) for score in range(1, 11)]
        assert reference.missing[feature] == int(np.isnan(column).sum())
        assert sum(reference.counts[feature]) + reference.missing[feature] == reference.rows
    assert reference.missing["bare_nuclei"] == 16
    assert reference.predicted_malignant == 241
    assert reference.predicted_malignant_share == pytest.approx(241 / 699)


def test_a_hand_made_split() -> None:
    X = np.array([[1.0] * 9, [10.0] * 5 + [NAN] + [10.0] * 3])

    assert make_reference(X, np.array([False, True])) == Reference(**_fields())


def test_json_round_trip(real_dataset: Dataset) -> None:
    reference = make_reference(real_dataset.X, real_dataset.y == 1)

    assert Reference.model_validate_json(reference.model_dump_json()) == reference


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rows": 3}, "clump_thickness: counts and missing add up to 2, not rows (3)"),
        ({"missing": {feature: 0 for feature in FEATURES}}, "bare_nuclei: counts and missing add up to 1, not rows"),
        ({"counts": {"clump_thickness": [2, *[0] * 9]}}, "counts must name exactly the features"),
        ({"missing": {"mitoses": 0}}, "missing must name exactly the features"),
        ({"counts": {feature: [2, 0, 0] for feature in FEATURES}}, "at least 10 items"),
        ({"counts": {feature: [3, -1, *[0] * 8] for feature in FEATURES}}, "greater than or equal to 0"),
        ({"predicted_malignant": 3}, "predicted_malignant (3) exceeds rows (2)"),
        ({"rows": 0}, "greater than or equal to 1"),
        ({"drift": True}, "Extra inputs are not permitted"),
    ],
)
def test_inconsistent_references_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Reference(**_fields(**changes))


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.ones((3, 8)), r"X must have 9 columns \(clump_thickness, .*, mitoses\), got shape \(3, 8\)"),
        (np.ones(9), r"X must have 9 columns .* got shape \(9,\)"),
        (
            np.array([[1.0] * 9, [1.0] * 8 + [11.0]]),
            "X column mitoses: scores must be integers 1..10 or NaN .* row 1 is 11",
        ),
        (np.array([[1.0, 2.5, *[1.0] * 7]]), "X column uniformity_of_cell_size: .* row 0 is 2.5"),
        (np.array([[0.0, *[1.0] * 8]]), "X column clump_thickness: .* row 0 is 0"),
        (np.array([[math.inf, *[1.0] * 8]]), "X column clump_thickness: .* row 0 is inf"),
    ],
)
def test_bad_scores_are_refused_naming_the_column_and_rule(X: np.ndarray[Any, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_reference(X, np.zeros(len(X), dtype=bool))


@pytest.mark.parametrize("predicted", [np.array([1, 0]), np.array([True]), np.array([[True, False]])])
def test_predictions_must_be_one_boolean_per_row(predicted: np.ndarray[Any, Any]) -> None:
    with pytest.raises(
        ValueError, match=r"predicted_malignant must be a boolean array with one entry per row of X \(2\)"
    ):
        make_reference(np.ones((2, 9)), predicted)


def test_score_counts_of_integer_scores() -> None:
    counts, missing = score_counts([[3] * 9, [3] * 9, [10] * 9], "window")

    assert counts.shape == (9, 10)
    assert counts[:, 2].tolist() == [2] * 9
    assert counts[:, 9].tolist() == [1] * 9
    assert counts.sum() == 27
    assert missing.tolist() == [0] * 9
