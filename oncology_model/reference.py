"""The drift reference a model bundle carries: on the model's training split, how often each feature took each score
1..10 or was missing, and how many rows the fitted model predicts malignant."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN

SCORES = SCORE_MAX - SCORE_MIN + 1
Count = Annotated[int, Field(ge=0, strict=True)]


class Reference(BaseModel):
    """The training split as the drift monitor sees it: per feature the counts of scores 1..10 and of missing
    values, and the rows the fitted model predicts malignant at its threshold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: Annotated[int, Field(ge=1, strict=True)]
    counts: dict[str, Annotated[list[Count], Field(min_length=SCORES, max_length=SCORES)]] = Field(
        description="feature -> rows with score 1, 2, ..., 10"
    )
    missing: dict[str, Count] = Field(description="feature -> rows where it is missing")
    predicted_malignant: Count

    @model_validator(mode="after")
    def _consistent(self) -> Reference:
        for name, per_feature in (("counts", self.counts), ("missing", self.missing)):
            if set(per_feature) != set(FEATURES):
                raise ValueError(f"{name} must name exactly the features {', '.join(FEATURES)}")
        for feature in FEATURES:
            total = sum(self.counts[feature]) + self.missing[feature]
            if total != self.rows:
                raise ValueError(f"{feature}: counts and missing add up to {total}, not rows ({self.rows})")
        if self.predicted_malignant > self.rows:
            raise ValueError(f"predicted_malignant ({self.predicted_malignant}) exceeds rows ({self.rows})")
        return self

    @property
    def predicted_malignant_share(self) -> float:
        """The share of rows the model predicts malignant."""
        return self.predicted_malignant / self.rows


def score_counts(scores: ArrayLike, name: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per feature (a row of the first result) the counts of scores 1..10, and per feature the missing values (NaN),
    in `scores` (rows x features); ValueError naming the column and the rule when it is not such a matrix."""
    X = np.asarray(scores, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(FEATURES):
        raise ValueError(f"{name} must have {len(FEATURES)} columns ({', '.join(FEATURES)}), got shape {X.shape}")
    missing = np.isnan(X)
    bad = ~missing & ((X < SCORE_MIN) | (X > SCORE_MAX) | (np.floor(X) != X))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} column {FEATURES[column]}: scores must be integers {SCORE_MIN}..{SCORE_MAX} or NaN (missing), "
            f"row {row} is {X[row, column]:g}"
        )
    present = ~missing
    cells = np.broadcast_to(np.arange(len(FEATURES)), X.shape)[present] * SCORES + X[present].astype(np.int64)
    counts = np.bincount(cells - SCORE_MIN, minlength=len(FEATURES) * SCORES).reshape(len(FEATURES), SCORES)
    return counts.astype(np.int64), missing.sum(axis=0).astype(np.int64)


def make_reference(X: NDArray[np.float64], predicted_malignant: NDArray[np.bool_]) -> Reference:
    """The reference of a training split `X` (rows x features, NaN where missing) and the model's predictions on it
    (True = malignant at the model's threshold)."""
    counts, missing = score_counts(X, "X")
    rows = len(X)
    predicted = np.asarray(predicted_malignant)
    if predicted.dtype != np.bool_ or predicted.shape != (rows,):
        raise ValueError(
            f"predicted_malignant must be a boolean array with one entry per row of X ({rows}), "
            f"got {predicted.dtype} of shape {predicted.shape}"
        )
    return Reference(
        rows=rows,
        counts={feature: row.tolist() for feature, row in zip(FEATURES, counts, strict=True)},
        missing={feature: int(m) for feature, m in zip(FEATURES, missing, strict=True)},
        predicted_malignant=int(predicted.sum()),
    )
