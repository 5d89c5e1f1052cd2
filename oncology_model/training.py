"""Fit the scikit-learn pipeline (imputer, scaler, estimator) from a typed configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from oncology_model.data import Dataset

Estimator = Literal["logistic_regression", "random_forest", "gradient_boosting"]
_ESTIMATORS: dict[str, type[ClassifierMixin]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "gradient_boosting": GradientBoostingClassifier,
}
CV_SCORING = ("roc_auc", "recall", "accuracy")


class TrainingConfig(BaseModel):
    """How to train: estimator, its hyperparameters, hold-out share, seed and cross-validation folds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    estimator: Estimator = "logistic_regression"
    hyperparameters: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    test_size: float = Field(default=0.2, gt=0.0, lt=0.5)
    seed: int = 42
    cv_folds: int = Field(default=5, ge=2, le=20)
    decision_threshold: float = Field(
        default=0.25,
        gt=0.0,
        lt=1.0,
        description="malignant when P(malignant) >= this; low, to favour sensitivity",
    )


@dataclass(frozen=True)
class Split:
    """Train and hold-out parts of a dataset."""

    X_train: NDArray[np.float64]
    X_test: NDArray[np.float64]
    y_train: NDArray[np.int64]
    y_test: NDArray[np.int64]


@dataclass(frozen=True)
class TrainedModel:
    """The fitted pipeline, the split it was fitted on, and its cross-validation scores."""

    pipeline: Pipeline
    split: Split
    cv_scores: dict[str, list[float]]


def build_pipeline(config: TrainingConfig) -> Pipeline:
    """An unfitted pipeline: median imputation (bare nuclei), standard scaling, the estimator."""
    estimator_cls = _ESTIMATORS[config.estimator]
    params = dict(config.hyperparameters)
    params.setdefault("random_state", config.seed)
    try:
        estimator = estimator_cls(**params)
        estimator._validate_params()  # scikit-learn's own parameter constraints
    except (TypeError, ValueError) as exc:
        raise ValueError(f"hyperparameters: invalid for {config.estimator}: {exc}") from None
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()), ("model", estimator)])


def split_dataset(dataset: Dataset, config: TrainingConfig) -> Split:
    """A stratified, seeded hold-out split."""
    X_train, X_test, y_train, y_test = train_test_split(
        dataset.X, dataset.y, test_size=config.test_size, random_state=config.seed, stratify=dataset.y
    )
    return Split(X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test)


def train(dataset: Dataset, config: TrainingConfig) -> TrainedModel:
    """Cross-validate on the training part, then fit on all of it. Same data and config give the same model."""
    split = split_dataset(dataset, config)
    folds = StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    cv = cross_validate(build_pipeline(config), split.X_train, split.y_train, cv=folds, scoring=CV_SCORING)
    cv_scores = {name: [round(float(s), 6) for s in cv[f"test_{name}"]] for name in CV_SCORING}
    pipeline = build_pipeline(config).fit(split.X_train, split.y_train)
    return TrainedModel(pipeline=pipeline, split=split, cv_scores=cv_scores)
