"""The drift rule: does a window of served requests differ from the training split a model's `Reference` describes?

- Below `min_rows` rows nothing is judged: the verdict is "insufficient data (<n> rows, need <min_rows>)".
- Each feature: a chi-square test of homogeneity on the 2 x k table of reference and window counts of the scores
  1..10, over the bins of `merge_bins`. Missing values are not in the test: they are data quality, reported as the
  missing share of the reference and of the window.
- The predicted-malignant share: the same test on the 2 x 2 table (predicted benign, malignant; reference, window).
  A two-sample test rather than `scipy.stats.binomtest` against the reference share, because that share is itself
  estimated from the training split; taken as exact it would raise false alarms (the feature tests are two-sample
  for the same reason).
- Holm's adjustment over the ten p-values (nine features, the share) holds the chance of any false alarm to at most
  alpha (measured in docs/monitoring.md).
- A feature drifts when its adjusted p-value is below alpha and its PSI over the same bins exceeds `psi_limit`, the
  95th percentile of PSI under no drift for the window's size; the share drifts when its adjusted p-value is below
  alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, Field, computed_field
from scipy.special import chdtrc

from oncology_model.datamodel import FEATURES, SCORE_MIN
from oncology_model.reference import Reference, score_counts

PREDICTION = "predicted malignant share"
MIN_EXPECTED = 5.0
PSI_DRAWS = 2_000
PSI_QUANTILE = 0.95
PSI_PSEUDOCOUNT = 0.5

Counts = NDArray[np.int64]


class ChiSquareTest(BaseModel):
    """A chi-square test of homogeneity, reference vs window."""

    statistic: float
    dof: int
    p_value: float
    adjusted_p: float = Field(description="Holm-adjusted over the ten hypotheses")
    drifts: bool


class FeatureTest(ChiSquareTest):
    """A feature's test, with the merged bins and the PSI over them."""

    bins: list[str] = Field(description="the scores each merged bin holds, e.g. '1', '6-10'")
    psi: float
    psi_limit: float = Field(description="95th percentile of PSI under no drift, for this window's size")


class FeatureDrift(BaseModel):
    """One feature: its counts and missing shares, and its test (None when the window is too small to judge)."""

    feature: str
    reference_counts: list[int] = Field(description="rows with score 1..10 in the reference")
    window_counts: list[int] = Field(description="rows with score 1..10 in the window")
    reference_missing_share: float
    window_missing_share: float | None = Field(description="None for an empty window")
    test: FeatureTest | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifts(self) -> bool:
        """The feature was judged and drifts."""
        return self.test is not None and self.test.drifts


class PredictionDrift(BaseModel):
    """The share of rows predicted malignant, reference vs window, and its test (None when not judged)."""

    reference_share: float
    window_share: float | None = Field(description="None for an empty window")
    test: ChiSquareTest | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifts(self) -> bool:
        """The share was judged and drifts."""
        return self.test is not None and self.test.drifts


class DriftReport(BaseModel):
    """The verdict on one window, with every number it rests on."""

    verdict: str = Field(description="'no drift', 'drift: <names>' or 'insufficient data (<n> rows, need <m>)'")
    drifting: list[str]
    rule: str
    alpha: float
    min_rows: int
    rows: int
    reference_rows: int
    seed: int = Field(description="seed of the PSI simulation")
    features: list[FeatureDrift]
    prediction: PredictionDrift
    refused_requests: int | None = Field(
        default=None, description="requests the service refused as invalid (HTTP 400/422) in the window, if counted"
    )


@dataclass(frozen=True)
class Homogeneity:
    """A chi-square test of homogeneity over merged bins (each bin starts at an index of `starts`)."""

    starts: tuple[int, ...]
    statistic: float
    dof: int
    p_value: float


def merge_bins(reference: Counts, window_rows: int) -> tuple[int, ...]:
    """Where each merged bin starts. Adjacent categories are joined left to right until the bin's expected count
    under no drift is at least 5 in both rows (in the reference its count, in the window `window_rows` times its
    reference share); a last bin short of that joins the one before. One bin when either row is empty.

    The bins depend on the reference and the window's size only, so they are the same for every window of a size."""
    reference_rows = int(reference.sum())
    smaller = min(reference_rows, window_rows)
    if smaller == 0:
        return (0,)
    needed = MIN_EXPECTED * reference_rows / smaller  # the reference count that makes both expected counts 5
    starts = [0]
    filled = 0
    for index, count in enumerate(reference.tolist()):
        if filled >= needed:
            starts.append(index)
            filled = 0
        filled += count
    if filled < needed and len(starts) > 1:
        starts.pop()
    return tuple(starts)


def homogeneity(reference: Counts, window: Counts) -> Homogeneity:
    """Chi-square test of homogeneity of two rows of counts over `merge_bins` (no continuity correction, as
    `scipy.stats.chi2_contingency(table, correction=False)`); statistic 0 and p = 1 with a single bin."""
    starts = merge_bins(reference, int(window.sum()))
    if len(starts) < 2:
        return Homogeneity(starts, 0.0, 0, 1.0)
    table = np.add.reduceat(np.stack([reference, window]), starts, axis=1)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = len(starts) - 1
    return Homogeneity(starts, statistic, dof, float(chdtrc(dof, statistic)))  # chdtrc: the chi-square upper tail


def psi(reference: Counts, window: Counts) -> NDArray[np.float64]:
    """Population stability index between counts along the last axis: the sum of (w - r) ln(w / r) over the
    shares, with `PSI_PSEUDOCOUNT` added to every count so that an empty bin gives a finite value."""
    r = reference + PSI_PSEUDOCOUNT
    w = window + PSI_PSEUDOCOUNT
    r = r / r.sum(axis=-1, keepdims=True)
    w = w / w.sum(axis=-1, keepdims=True)
    return np.asarray(((w - r) * np.log(w / r)).sum(axis=-1), dtype=np.float64)


@lru_cache(maxsize=256)
def psi_limit(reference: tuple[int, ...], window_rows: int, seed: int) -> float:
    """The 95th percentile of PSI over `merge_bins` when nothing drifted, for a window of `window_rows` rows.

    Simulated from `PSI_DRAWS` pairs of a reference-sized and a window-sized multinomial sample, both drawn from the
    reference's shares: the observed PSI compares two samples (the reference is one too, of a few hundred rows), and
    a window compared with exact shares would understate its spread."""
    counts = np.array(reference, dtype=np.int64)
    starts = merge_bins(counts, window_rows)
    if len(starts) < 2:
        return 0.0
    shares = counts / counts.sum()
    rng = np.random.default_rng(seed)
    drawn_reference = rng.multinomial(int(counts.sum()), shares, size=PSI_DRAWS)
    drawn_window = rng.multinomial(window_rows, shares, size=PSI_DRAWS)
    values = psi(np.add.reduceat(drawn_reference, starts, axis=1), np.add.reduceat(drawn_window, starts, axis=1))
    return float(np.quantile(values, PSI_QUANTILE))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: the i-th smallest (counting from 0) times (m - i),
    raised to the adjusted value of any smaller p, at most 1."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def rule(alpha: float, min_rows: int) -> str:
    """The rule in one sentence, for the report."""
    return (
        f"With at least {min_rows} rows, a feature drifts when its chi-square homogeneity test against the reference "
        f"(scores 1..10, adjacent scores merged until every expected count is at least {MIN_EXPECTED:g}) has a "
        f"Holm-adjusted p-value below {alpha:g} over ten hypotheses and its PSI exceeds the {PSI_QUANTILE:.0%} "
        "no-drift percentile for the window's size, and the predicted-malignant share drifts when its two-sample "
        f"test's adjusted p-value is below {alpha:g}."
    )


def _labels(starts: tuple[int, ...], categories: int) -> list[str]:
    """'1', '6-10': the scores each bin holds."""
    ends = [*starts[1:], categories]
    return [
        str(SCORE_MIN + a) if b - a == 1 else f"{SCORE_MIN + a}-{SCORE_MIN + b - 1}"
        for a, b in zip(starts, ends, strict=True)
    ]


def _feature_test(
    reference: Counts, window: Counts, test: Homogeneity, adjusted_p: float, alpha: float, seed: int
) -> FeatureTest:
    value = float(psi(np.add.reduceat(reference, test.starts), np.add.reduceat(window, test.starts)))
    limit = psi_limit(tuple(reference.tolist()), int(window.sum()), seed)
    return FeatureTest(
        statistic=test.statistic,
        dof=test.dof,
        p_value=test.p_value,
        adjusted_p=adjusted_p,
        drifts=adjusted_p < alpha and value > limit,
        bins=_labels(test.starts, len(reference)),
        psi=value,
        psi_limit=limit,
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _check(alpha: float, min_rows: int, predicted_malignant: int, rows: int) -> None:
    """ValueError naming the argument and its rule."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    if min_rows < 1:
        raise ValueError(f"min_rows must be at least 1, got {min_rows}")
    if isinstance(predicted_malignant, bool) or not isinstance(predicted_malignant, Integral):
        raise ValueError(f"predicted_malignant must be an integer, got {predicted_malignant!r}")
    if not 0 <= predicted_malignant <= rows:
        raise ValueError(
            f"predicted_malignant must be between 0 and the window's {rows} rows, got {predicted_malignant}"
        )


def _judge(
    reference: Reference, window_counts: Counts, rows: int, malignant: int, alpha: float, seed: int
) -> tuple[list[FeatureTest], ChiSquareTest]:
    """The nine feature tests and the share's, Holm-adjusted together."""
    reference_counts = np.array([reference.counts[feature] for feature in FEATURES], dtype=np.int64)
    tests = [homogeneity(r, w) for r, w in zip(reference_counts, window_counts, strict=True)]
    share = homogeneity(
        np.array([reference.rows - reference.predicted_malignant, reference.predicted_malignant]),
        np.array([rows - malignant, malignant]),
    )
    *adjusted, share_adjusted = holm([test.p_value for test in tests] + [share.p_value])
    features = [
        _feature_test(r, w, test, p, alpha, seed)
        for r, w, test, p in zip(reference_counts, window_counts, tests, adjusted, strict=True)
    ]
    return features, ChiSquareTest(
        statistic=share.statistic,
        dof=share.dof,
        p_value=share.p_value,
        adjusted_p=share_adjusted,
        drifts=share_adjusted < alpha,
    )


def assess(
    reference: Reference,
    window: ArrayLike,
    predicted_malignant: int,
    *,
    alpha: float = 0.05,
    min_rows: int = 200,
    seed: int = 0,
) -> DriftReport:
    """Judge a window (rows x features: integer scores 1..10, NaN as missing) of which the model predicted
    `predicted_malignant` rows malignant, against `reference`; ValueError on bad arguments."""
    window_counts, window_missing = score_counts(window, "window")
    rows = int(window_counts[0].sum() + window_missing[0])  # each row is counted or missing in every column
    _check(alpha, min_rows, predicted_malignant, rows)
    malignant = int(predicted_malignant)
    judged = rows >= min_rows
    feature_tests: list[FeatureTest] | list[None] = [None] * len(FEATURES)
    share_test: ChiSquareTest | None = None
    if judged:
        feature_tests, share_test = _judge(reference, window_counts, rows, malignant, alpha, seed)
    features = [
        FeatureDrift(
            feature=feature,
            reference_counts=reference.counts[feature],
            window_counts=counts.tolist(),
            reference_missing_share=reference.missing[feature] / reference.rows,
            window_missing_share=_share(int(missing), rows),
            test=test,
        )
        for feature, counts, missing, test in zip(FEATURES, window_counts, window_missing, feature_tests, strict=True)
    ]
    prediction = PredictionDrift(
        reference_share=reference.predicted_malignant_share, window_share=_share(malignant, rows), test=share_test
    )
    drifting = [row.feature for row in features if row.drifts] + ([PREDICTION] if prediction.drifts else [])
    if not judged:
        verdict = f"insufficient data ({rows} rows, need {min_rows})"
    else:
        verdict = f"drift: {', '.join(drifting)}" if drifting else "no drift"
    return DriftReport(
        verdict=verdict,
        drifting=drifting,
        rule=rule(alpha, min_rows),
        alpha=alpha,
        min_rows=min_rows,
        rows=rows,
        reference_rows=reference.rows,
        seed=seed,
        features=features,
        prediction=prediction,
    )
