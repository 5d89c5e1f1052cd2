"""Hold-out metrics with bootstrap confidence intervals, and the quality gate."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import rankdata

METRICS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "specificity",
    "roc_auc",
    "tn",
    "fp",
    "fn",
    "tp",
)


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
    n_bootstrap: int = 1000,
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


class GateThresholds(BaseModel):
    """Minimum hold-out values, and how much worse than the champion a challenger may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_recall: float = Field(default=0.95, ge=0, le=1)
    min_roc_auc: float = Field(default=0.97, ge=0, le=1)
    min_accuracy: float = Field(default=0.93, ge=0, le=1)
    min_specificity: float = Field(default=0.90, ge=0, le=1)
    champion_tolerance: float = Field(default=0.01, ge=0, le=1)
    compared_metrics: tuple[str, ...] = ("recall", "roc_auc", "accuracy")


class GateDecision(BaseModel):
    """Whether the challenger may go to production, with the reasons in plain words."""

    passed: bool
    reasons: list[str]
    champion_version: str | None = None


class QualityGate:
    """Thresholds plus a champion comparison on the same hold-out data."""

    def __init__(self, thresholds: GateThresholds | None = None) -> None:
        self.thresholds = thresholds or GateThresholds()

    def decide(
        self, challenger: Evaluation, champion: Evaluation | None = None, champion_version: str | None = None
    ) -> GateDecision:
        """Pass only if every threshold holds and no compared metric is worse than the champion's beyond tolerance."""
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
        if champion is None:
            passes.append("no champion in production: first model")
        else:
            label = f"champion {champion_version}" if champion_version else "champion"
            for name in t.compared_metrics:
                new, old = challenger.value(name), champion.value(name)
                if new < old - t.champion_tolerance:
                    failures.append(
                        f"{name} {new:.4f} is worse than {label} {old:.4f} beyond tolerance {t.champion_tolerance}"
                    )
                else:
                    passes.append(f"{name} {new:.4f} vs {label} {old:.4f} (tolerance {t.champion_tolerance})")
        return GateDecision(passed=not failures, reasons=failures or passes, champion_version=champion_version)
