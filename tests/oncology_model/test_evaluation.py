"""Hold-out metrics with bootstrap confidence intervals, and the quality gate."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from oncology_model.config import GateThresholds
from oncology_model.evaluation import (
    FLOOR_METRICS,
    METRICS,
    Difference,
    Estimate,
    Evaluation,
    QualityGate,
    RepeatedCv,
    compare,
    evaluate,
    repeated_cv_estimate,
)

RATES = ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc")
COUNTS = ("tn", "fp", "fn", "tp")

# Six benign, four malignant; hand-computed below.
Y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=np.int64)
P = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.05, 0.9, 0.8, 0.45, 0.7], dtype=np.float64)


def _noisy(n: int = 300, seed: int = 1) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Labels and informative-but-imperfect probabilities, with ties (rounded to 0.1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int64)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 1).astype(np.float64)
    return y, p


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        pytest.param(
            0.5,
            {"tn": 5, "fp": 1, "fn": 1, "tp": 3, "accuracy": 0.8, "precision": 0.75, "recall": 0.75}
            | {"specificity": 5 / 6, "f1": 0.75},
            id="threshold-0.5",
        ),
        pytest.param(
            0.4,  # 0.4 itself counts as malignant (>=)
            {"tn": 4, "fp": 2, "fn": 0, "tp": 4, "accuracy": 0.8, "precision": 4 / 6, "recall": 1.0}
            | {"specificity": 4 / 6, "f1": 0.8},
            id="threshold-0.4",
        ),
        pytest.param(
            0.95,  # nothing predicted malignant: precision and f1 are 0, not NaN
            {"tn": 6, "fp": 0, "fn": 4, "tp": 0, "accuracy": 0.6, "precision": 0.0, "recall": 0.0}
            | {"specificity": 1.0, "f1": 0.0},
            id="threshold-0.95",
        ),
    ],
)
def test_metrics_equal_hand_computed_values(threshold: float, expected: dict[str, float]) -> None:
    evaluation = evaluate(Y, P, threshold=threshold, n_bootstrap=50)
    assert evaluation.n_test == 10
    assert evaluation.threshold == threshold
    for name, value in expected.items():
        assert evaluation.value(name) == pytest.approx(value, abs=1e-6), name
    # Ranking does not depend on the threshold: 23 of the 24 (malignant, benign) pairs are ordered correctly.
    assert evaluation.value("roc_auc") == pytest.approx(23 / 24, abs=1e-6)


def test_metrics_cover_every_name() -> None:
    assert set(evaluate(Y, P, n_bootstrap=20).metrics) == set(METRICS)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_roc_auc_equals_sklearn_with_ties(seed: int) -> None:
    y, p = _noisy(seed=seed)
    assert len(np.unique(p)) < len(p)  # there are ties
    evaluation = evaluate(y, p, n_bootstrap=20)
    assert evaluation.value("roc_auc") == pytest.approx(roc_auc_score(y, p), abs=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
def test_metrics_equal_sklearn_on_random_data(seed: int) -> None:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

    y, p = _noisy(seed=seed)
    pred = (p >= 0.5).astype(int)
    evaluation = evaluate(y, p, threshold=0.5, n_bootstrap=20)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert [evaluation.value(n) for n in COUNTS] == [tn, fp, fn, tp]
    assert evaluation.value("accuracy") == pytest.approx(accuracy_score(y, pred), abs=1e-6)
    assert evaluation.value("precision") == pytest.approx(precision_score(y, pred), abs=1e-6)
    assert evaluation.value("recall") == pytest.approx(recall_score(y, pred), abs=1e-6)
    assert evaluation.value("f1") == pytest.approx(f1_score(y, pred), abs=1e-6)
    assert evaluation.value("specificity") == pytest.approx(tn / (tn + fp), abs=1e-6)


def test_confidence_intervals_contain_the_estimate_and_stay_in_range() -> None:
    y, p = _noisy(n=300)
    evaluation = evaluate(y, p, threshold=0.5, n_bootstrap=500)
    for name in RATES:
        est = evaluation.metrics[name]
        assert 0.0 <= est.ci_low <= est.value <= est.ci_high <= 1.0, name
        assert est.ci_low < est.ci_high, name
    for name in COUNTS:
        est = evaluation.metrics[name]
        assert 0 <= est.ci_low <= est.value <= est.ci_high <= 300, name


def test_bootstrap_is_deterministic_with_the_seed() -> None:
    y, p = _noisy()
    first = evaluate(y, p, n_bootstrap=200, seed=9)
    second = evaluate(y, p, n_bootstrap=200, seed=9)
    other = evaluate(y, p, n_bootstrap=200, seed=10)
    assert first == second
    assert [first.metrics[n].value for n in METRICS] == [other.metrics[n].value for n in METRICS]
    assert any(first.metrics[n].ci_low != other.metrics[n].ci_low for n in RATES)


def test_cv_scores_are_carried() -> None:
    scores = {"roc_auc": [0.99, 0.98]}
    assert evaluate(Y, P, n_bootstrap=10, cv_scores=scores).cv_scores == scores
    assert evaluate(Y, P, n_bootstrap=10).cv_scores == {}


# --- quality gate ------------------------------------------------------------------------------------------------

GOOD = {"recall": 0.98, "roc_auc": 0.99, "accuracy": 0.96, "specificity": 0.95}


def _evaluation(**values: float) -> Evaluation:
    """An evaluation whose repeated cross-validation means are GOOD with `values` changed; its hold-out is all 0.5
    (the floors judge the cross-validation, never the hold-out)."""
    merged = {**GOOD, **values}
    hold_out = {name: Estimate(value=0.5, ci_low=0.0, ci_high=1.0) for name in METRICS}
    cv = {name: Estimate(value=merged[name], ci_low=0.0, ci_high=1.0) for name in FLOOR_METRICS}
    repeated = RepeatedCv(folds=5, repeats=5, rows=699, metrics=cv)
    return Evaluation(n_test=140, threshold=0.25, metrics=hold_out, repeated_cv=repeated)


def test_gate_passes_a_good_first_model_and_says_there_is_no_champion() -> None:
    decision = QualityGate().decide(_evaluation())
    assert decision.passed is True
    assert decision.champion_version is None
    assert "no champion in production: first model" in decision.reasons
    assert "recall 0.9800 >= minimum 0.9500 (mean of 5x5-fold cross-validation, 95 % [0.0000, 1.0000])" in (
        decision.reasons
    )


@pytest.mark.parametrize(
    ("metric", "minimum"),
    [("recall", 0.95), ("roc_auc", 0.97), ("accuracy", 0.93), ("specificity", 0.90)],
)
def test_gate_fails_on_each_threshold(metric: str, minimum: float) -> None:
    decision = QualityGate().decide(_evaluation(**{metric: minimum - 0.01}))
    assert decision.passed is False
    assert [r.split(" (")[0] for r in decision.reasons] == [f"{metric} {minimum - 0.01:.4f} < minimum {minimum:.4f}"]


@pytest.mark.parametrize(
    ("metric", "minimum"),
    [("recall", 0.95), ("roc_auc", 0.97), ("accuracy", 0.93), ("specificity", 0.90)],
)
def test_gate_passes_exactly_at_the_minimum(metric: str, minimum: float) -> None:
    assert QualityGate().decide(_evaluation(**{metric: minimum})).passed is True


def test_gate_lists_every_failure() -> None:
    decision = QualityGate().decide(_evaluation(recall=0.5, accuracy=0.5))
    assert decision.passed is False
    assert [r.split()[0] for r in decision.reasons] == ["recall", "accuracy"]


def test_gate_uses_custom_thresholds() -> None:
    gate = QualityGate(GateThresholds(min_recall=0.99))
    decision = gate.decide(_evaluation(recall=0.98))
    assert decision.passed is False
    assert [r.split(" (")[0] for r in decision.reasons] == ["recall 0.9800 < minimum 0.9900"]


def _diff(challenger: float, champion: float, low: float, high: float) -> Difference:
    return Difference(
        challenger=challenger, champion=champion, difference=challenger - champion, ci_low=low, ci_high=high
    )


def _comparison(**overrides: Difference) -> dict[str, Difference]:
    same = _diff(0.97, 0.97, -0.02, 0.02)
    return {name: overrides.get(name, same) for name in ("accuracy", "recall", "specificity", "roc_auc")}


@pytest.mark.parametrize("metric", ["recall", "roc_auc", "accuracy"])
def test_gate_fails_when_the_whole_interval_of_the_difference_is_below_zero(metric: str) -> None:
    worse = _comparison(**{metric: _diff(0.95, 0.99, -0.08, -0.01)})
    decision = QualityGate().decide(_evaluation(), worse, champion_version="20261101T000000Z-0c4a3f10")
    assert decision.passed is False
    assert decision.champion_version == "20261101T000000Z-0c4a3f10"
    assert decision.comparison == worse
    (reason,) = decision.reasons
    assert reason.startswith(
        f"{metric} 0.9500 vs champion 20261101T000000Z-0c4a3f10 0.9900: difference -0.0400 [-0.0800, -0.0100]"
    )
    assert "is worse than the champion" in reason


def test_gate_passes_when_the_interval_reaches_zero_or_above() -> None:
    comparison = _comparison(recall=_diff(0.9583, 0.9792, -0.0625, 0.0208))
    decision = QualityGate().decide(_evaluation(), comparison, champion_version="v-old")
    assert decision.passed is True
    assert (
        "recall 0.9583 vs champion v-old 0.9792: difference -0.0209 [-0.0625, +0.0208]: not worse" in decision.reasons
    )
    assert not any("first model" in r for r in decision.reasons)


def test_the_champion_margin_is_configurable() -> None:
    comparison = _comparison(recall=_diff(0.96, 0.99, -0.05, -0.01))
    assert QualityGate().decide(_evaluation(), comparison).passed is False
    assert QualityGate(GateThresholds(champion_margin=0.02)).decide(_evaluation(), comparison).passed is True


def test_a_paired_comparison_of_a_model_with_itself_is_exactly_zero() -> None:
    y, p = _noisy()
    comparison = compare(y, (p, 0.5), (p, 0.5), n_bootstrap=200)
    assert all((d.difference, d.ci_low, d.ci_high) == (0.0, 0.0, 0.0) for d in comparison.values())


def test_a_paired_comparison_finds_a_clearly_better_challenger_and_agrees_with_evaluate() -> None:
    y, p = _noisy()
    better = np.where(y == 1, np.maximum(p, 0.9), np.minimum(p, 0.1))
    comparison = compare(y, (better, 0.5), (p, 0.5), n_bootstrap=300)
    assert comparison["accuracy"].ci_low > 0 and comparison["roc_auc"].ci_low > 0
    assert comparison["recall"].challenger == evaluate(y, better, n_bootstrap=100).value("recall")
    assert comparison["recall"].champion == evaluate(y, p, n_bootstrap=100).value("recall")
    decision = QualityGate(GateThresholds(min_recall=0, min_roc_auc=0, min_accuracy=0, min_specificity=0)).decide(
        _evaluation(), compare(y, (p, 0.5), (better, 0.5), n_bootstrap=300), "v-better"
    )
    assert decision.passed is False  # the old, better model stays: the new one is worse with 95 % confidence


@pytest.mark.parametrize("field", ["min_recall", "min_roc_auc", "min_accuracy", "min_specificity", "champion_margin"])
@pytest.mark.parametrize("value", [-0.1, 1.1])
def test_gate_thresholds_refuse_values_outside_0_1(field: str, value: float) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GateThresholds.model_validate({field: value})


def test_the_gate_refuses_an_evaluation_without_repeated_cross_validation() -> None:
    evaluation = _evaluation().model_copy(update={"repeated_cv": None})
    with pytest.raises(ValueError, match="repeated cross-validation"):
        QualityGate().decide(evaluation)


# --- repeated cross-validation estimate --------------------------------------------------------------------------


def test_repeated_cv_estimate_is_the_mean_of_the_folds_with_the_corrected_t_interval() -> None:
    from scipy.stats import t

    folds = [(Y, P, 0.5), (Y, P, 0.75), (Y, P, 0.42), (Y, P, 0.35)]
    recalls = [0.75, 0.5, 1.0, 1.0]  # of the four malignant rows (0.9, 0.8, 0.45, 0.7) at each threshold
    estimate = repeated_cv_estimate(folds, repeats=2, train_rows=30)
    half = t.ppf(0.975, 3) * np.sqrt((1 / 4 + 10 / 30) * np.var(recalls, ddof=1))
    recall = estimate.metrics["recall"]
    assert recall.value == pytest.approx(np.mean(recalls))
    assert recall.ci_low == pytest.approx(max(0.0, np.mean(recalls) - half), abs=1e-6)
    assert recall.ci_high == pytest.approx(min(1.0, np.mean(recalls) + half), abs=1e-6)
    assert (estimate.folds, estimate.repeats, estimate.rows) == (2, 2, 20)
    assert set(estimate.metrics) == set(FLOOR_METRICS)


def test_identical_folds_give_a_zero_width_interval() -> None:
    estimate = repeated_cv_estimate([(Y, P, 0.5)] * 5, repeats=1, train_rows=40)
    assert all(e.ci_low == e.value == e.ci_high for e in estimate.metrics.values())
