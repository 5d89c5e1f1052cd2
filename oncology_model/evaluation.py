"""Hold-out metrics with bootstrap confidence intervals, and the quality gate."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import rankdata

#: The confusion matrix's counts at the decision threshold.
COUNTS: tuple[str, ...] = ("tn", "fp", "fn", "tp")
METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc", *COUNTS)
#: Bootstrap resamples of the confidence intervals and the champion comparison (the setting's default).
BOOTSTRAP_RESAMPLES = 1000


class Estimate(BaseModel):
    """A point estimate with its 95 % bootstrap confidence interval."""

    value: float
    ci_low: float
    ci_high: float


class Evaluation(BaseModel):
    """Hold-out metrics (malignant is the positive class) and cross-validation scores."""

    n_test: int
    threshold: float
    metrics: dict[str, Estimate]
    cv_scores: dict[str, list[float]] = Field(default_factory=dict)

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


class GateThresholds(BaseModel):
    """Minimum hold-out values, and when a challenger counts as worse than the champion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_recall: float = Field(default=0.95, ge=0, le=1)
    min_roc_auc: float = Field(default=0.97, ge=0, le=1)
    min_accuracy: float = Field(default=0.93, ge=0, le=1)
    min_specificity: float = Field(default=0.90, ge=0, le=1)
    champion_margin: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="worse than the champion: the whole 95 % interval of (challenger - champion) is below -margin",
    )
    compared_metrics: tuple[str, ...] = ("recall", "roc_auc", "accuracy")


class GateDecision(BaseModel):
    """Whether the challenger may go to production, with the reasons in plain words."""

    passed: bool
    reasons: list[str]
    champion_version: str | None = None
    comparison: dict[str, Difference] = Field(default_factory=dict)


class QualityGate:
    """Thresholds plus a champion comparison on the same hold-out data."""

    def __init__(self, thresholds: GateThresholds | None = None) -> None:
        self.thresholds = thresholds or GateThresholds()

    def decide(
        self,
        challenger: Evaluation,
        comparison: dict[str, Difference] | None = None,
        champion_version: str | None = None,
    ) -> GateDecision:
        """Pass only if every threshold holds and no compared metric is worse than the champion's: worse means
        the paired 95 % interval of the difference lies entirely below `-champion_margin`."""
        t = self.thresholds
        failures: list[str] = []
        passes: list[str] = []
        for name, minimum in (
            ("recall", t.min_recall),
            ("roc_auc", t.min_roc_auc),
            ("accuracy", t.min_accuracy),
            ("specificity", t.min_specificity),
        ):
            value = challenger.value(name)
            (passes if value >= minimum else failures).append(
                f"{name} {value:.4f} {'>=' if value >= minimum else '<'} minimum {minimum:.4f}"
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
