"""Hold-out metrics with bootstrap confidence intervals, repeated cross-validation estimates, and the quality
gate: its absolute floors are judged on the repeated cross-validation (stable as the data grows and the split
moves), its champion comparison on the paired hold-out rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from scipy.stats import rankdata
from scipy.stats import t as student_t

from oncology_model.config import BOOTSTRAP_RESAMPLES, GateThresholds

#: The confusion matrix's counts at the decision threshold.
COUNTS: tuple[str, ...] = ("tn", "fp", "fn", "tp")
METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc", *COUNTS)


class Estimate(BaseModel):
    """A point estimate with its 95 % bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float


#: The metrics the gate's floors judge.
FLOOR_METRICS: tuple[str, ...] = ("recall", "roc_auc", "accuracy", "specificity")
CV_INTERVAL = (
    "95 % t interval over the folds with the Nadeau-Bengio corrected variance (1/(folds x repeats) + "
    "test rows/train rows) x s^2 (fold scores of repeated cross-validation are correlated)"
)


class RepeatedCv(BaseModel):
    """The training procedure's metrics over repeated stratified cross-validation of all the data: per metric
    the mean of the fold scores and its corrected 95 % interval (`CV_INTERVAL`)."""

    folds: int
    repeats: int
    rows: int
    metrics: dict[str, Estimate]
    interval: str = CV_INTERVAL


class Evaluation(BaseModel):
    """Hold-out metrics (malignant is the positive class), cross-validation scores of the training split, and the
    repeated cross-validation the gate's floors judge (None in bundles made before it existed)."""

    n_test: int
    threshold: float
    metrics: dict[str, Estimate]
    cv_scores: dict[str, list[float]] = Field(default_factory=dict)
    repeated_cv: RepeatedCv | None = None

    def value(self, name: str) -> float:
        """The point estimate of one metric."""
        return self.metrics[name].value


def _metric_table(y: NDArray[np.int64], proba: NDArray[np.float64], threshold: float) -> dict[str, NDArray[np.float64]]:
    """All metrics at once for rows of resampled labels/probabilities (shape: resamples x samples)."""
    pred = proba >= threshold
    pos = y == 1
    tp = (pred & pos).sum(axis=1).astype(np.float64)
    fp = (pred & ~pos).sum(axis=1).astype(np.float64)
    fn = (~pred & pos).sum(axis=1).astype(np.float64)
    tn = (~pred & ~pos).sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), 0.0)
        n_pos, n_neg = pos.sum(axis=1), (~pos).sum(axis=1)
        ranks = rankdata(proba, axis=1)
        auc = ((ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return {
        "accuracy": (tp + tn) / y.shape[1],
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "specificity": specificity,
        "roc_auc": auc,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
    }


def evaluate(
    y_true: NDArray[np.int64],
    proba: NDArray[np.float64],
    *,
    threshold: float = 0.5,
    n_bootstrap: int = BOOTSTRAP_RESAMPLES,
    seed: int = 42,
    cv_scores: dict[str, list[float]] | None = None,
) -> Evaluation:
    """Metrics on the hold-out set, each with a percentile bootstrap 95 % confidence interval."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    point = _metric_table(y[None, :], p[None, :], threshold)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_bootstrap, len(y)))
    boot = _metric_table(y[idx], p[idx], threshold)
    metrics = {}
    for name in METRICS:
        samples = boot[name][np.isfinite(boot[name])]
        low, high = np.percentile(samples, [2.5, 97.5]) if samples.size else (np.nan, np.nan)
        metrics[name] = Estimate(
            value=round(float(point[name][0]), 6), ci_low=round(float(low), 6), ci_high=round(float(high), 6)
        )
    return Evaluation(n_test=len(y), threshold=threshold, metrics=metrics, cv_scores=cv_scores or {})


def repeated_cv_estimate(
    folds: Sequence[tuple[NDArray[np.int64], NDArray[np.float64], float]], *, repeats: int, train_rows: int
) -> RepeatedCv:
    """Mean and corrected 95 % interval of each floor metric over `folds` (labels, probabilities, threshold), the
    folds of `repeats` repetitions, each model trained on about `train_rows` rows (Nadeau & Bengio, 2003)."""
    scores: dict[str, list[float]] = {name: [] for name in FLOOR_METRICS}
    rows = 0
    for y, proba, threshold in folds:
        table = _metric_table(np.asarray(y)[None, :], np.asarray(proba)[None, :], threshold)
        for name in FLOOR_METRICS:
            scores[name].append(float(table[name][0]))
        rows += len(y)
    k = len(folds)
    test_rows = rows / k
    quantile = float(student_t.ppf(0.975, k - 1))
    metrics = {}
    for name, values in scores.items():
        mean = float(np.mean(values))
        half = quantile * float(np.sqrt((1 / k + test_rows / train_rows) * np.var(values, ddof=1)))
        metrics[name] = Estimate(
            value=round(mean, 6), ci_low=round(max(0.0, mean - half), 6), ci_high=round(min(1.0, mean + half), 6)
        )
    return RepeatedCv(folds=k // repeats, repeats=repeats, rows=rows // repeats, metrics=metrics)


class Difference(BaseModel):
    """Challenger minus champion for one metric on the same rows, with its paired bootstrap 95 % interval."""

    challenger: float
    champion: float
    difference: float
    ci_low: float
    ci_high: float


def compare(
    y_true: NDArray[np.int64],
    challenger: tuple[NDArray[np.float64], float],
    champion: tuple[NDArray[np.float64], float],
    *,
    n_bootstrap: int = BOOTSTRAP_RESAMPLES,
    seed: int = 42,
) -> dict[str, Difference]:
    """Paired comparison on the same hold-out rows: each resample draws the same rows for both models.

    `challenger` and `champion` are (probabilities, decision threshold).
    """
    y = np.asarray(y_true, dtype=np.int64)
    (p_new, t_new), (p_old, t_old) = challenger, champion
    new_point = _metric_table(y[None, :], np.asarray(p_new)[None, :], t_new)
    old_point = _metric_table(y[None, :], np.asarray(p_old)[None, :], t_old)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_bootstrap, len(y)))
    new_boot = _metric_table(y[idx], np.asarray(p_new)[idx], t_new)
    old_boot = _metric_table(y[idx], np.asarray(p_old)[idx], t_old)
    differences = {}
    for name in ("accuracy", "recall", "specificity", "roc_auc"):
        delta = new_boot[name] - old_boot[name]
        delta = delta[np.isfinite(delta)]
        low, high = np.percentile(delta, [2.5, 97.5]) if delta.size else (np.nan, np.nan)
        new, old = float(new_point[name][0]), float(old_point[name][0])
        differences[name] = Difference(
            challenger=round(new, 6),
            champion=round(old, 6),
            difference=round(new - old, 6),
            ci_low=round(float(low), 6),
            ci_high=round(float(high), 6),
        )
    return differences


class GateDecision(BaseModel):
    """Whether the challenger may go to production, with the reasons in plain words."""

    passed: bool
    reasons: list[str]
    champion_version: str | None = None
    comparison: dict[str, Difference] = Field(default_factory=dict)


class QualityGate:
    """Floors on the repeated cross-validation plus a champion comparison on the same hold-out rows."""

    def __init__(self, thresholds: GateThresholds | None = None) -> None:
        self.thresholds = thresholds or GateThresholds()

    def decide(
        self,
        challenger: Evaluation,
        comparison: dict[str, Difference] | None = None,
        champion_version: str | None = None,
    ) -> GateDecision:
        """Pass only if the repeated cross-validation's mean of every floor metric reaches its minimum and no
        compared metric is worse than the champion's: worse means the paired 95 % hold-out interval of the
        difference lies entirely below `-champion_margin`."""
        t = self.thresholds
        floors = challenger.repeated_cv
        if floors is None:
            raise ValueError("the gate judges its floors on repeated cross-validation; this evaluation has none")
        failures: list[str] = []
        passes: list[str] = []
        how = f"mean of {floors.repeats}x{floors.folds}-fold cross-validation"
        for name, minimum in (
            ("recall", t.min_recall),
            ("roc_auc", t.min_roc_auc),
            ("accuracy", t.min_accuracy),
            ("specificity", t.min_specificity),
        ):
            e = floors.metrics[name]
            (passes if e.value >= minimum else failures).append(
                f"{name} {e.value:.4f} {'>=' if e.value >= minimum else '<'} minimum {minimum:.4f} "
                f"({how}, 95 % [{e.ci_low:.4f}, {e.ci_high:.4f}])"
            )
        if comparison is None:
            passes.append("no champion in production: first model")
        else:
            label = f"champion {champion_version}" if champion_version else "champion"
            for name in t.compared_metrics:
                d = comparison[name]
                text = (
                    f"{name} {d.challenger:.4f} vs {label} {d.champion:.4f}: difference {d.difference:+.4f} "
                    f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
                )
                if d.ci_high < -t.champion_margin:
                    bound = f"{-t.champion_margin:+.4f}" if t.champion_margin else "zero"
                    failures.append(f"{text} is worse than the {label} (the whole interval is below {bound})")
                else:
                    passes.append(f"{text}: not worse")
        return GateDecision(
            passed=not failures,
            reasons=failures or passes,
            champion_version=champion_version,
            comparison=comparison or {},
        )
