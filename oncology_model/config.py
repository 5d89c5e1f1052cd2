"""How to train and how to judge: the typed settings of training and of the quality gate, their rules and
defaults. Pydantic only (no numpy, scipy or scikit-learn), so that settings, flows' parameters and the `alerts`
command load them without the model code."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Estimator = Literal["logistic_regression", "random_forest", "gradient_boosting"]
#: Bootstrap resamples of the confidence intervals and the champion comparison (the setting's default).
BOOTSTRAP_RESAMPLES = 1000


# The rules of the training settings, shared by TrainingConfig (its defaults are the defaults) and the
# pipeline settings, so that a value is checked by the same rule wherever it is set.
HoldOutShare = Annotated[
    float, Field(gt=0.0, lt=0.5, description="share of the rows held out for the evaluation and the gate, in (0, 0.5)")
]
CvFolds = Annotated[int, Field(ge=2, le=20, description="cross-validation folds on the training split, 2 to 20")]
DecisionThreshold = Annotated[
    float | None,
    Field(
        gt=0.0,
        lt=1.0,
        description="malignant when P(malignant) >= this, in (0, 1); None: chosen by cross-validation to reach "
        "target_recall",
    ),
]
TargetRecall = Annotated[
    float,
    Field(
        gt=0.0,
        le=1.0,
        description="the out-of-fold malignant recall on the training split the chosen threshold reaches, in (0, 1]",
    ),
]


class TrainingConfig(BaseModel):
    """How to train: estimator, its hyperparameters, hold-out share, seed, cross-validation folds and the decision
    threshold. The one home of their defaults and rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    estimator: Estimator = "logistic_regression"
    hyperparameters: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    test_size: HoldOutShare = 0.2
    seed: int = 42
    cv_folds: CvFolds = 5
    decision_threshold: DecisionThreshold = None
    target_recall: TargetRecall = 0.98


def first_error(exc: ValidationError) -> str:
    """A validation error as one line: the field, the rule it breaks and the value given."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    rule = error["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if not field:  # a rule over several fields names them itself
        return rule + more
    return f"{field}: {rule} (got {error['input']!r}){more}"


class GateThresholds(BaseModel):
    """Minimum values of the repeated cross-validation's means, its folds and repeats, and when a challenger
    counts as worse than the champion on the hold-out."""

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
    cv_folds: int = Field(default=5, ge=2, le=20, description="folds of the cross-validation the floors judge")
    cv_repeats: int = Field(default=5, ge=1, le=20, description="repetitions (reshuffles) of those folds")
