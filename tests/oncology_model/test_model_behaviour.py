"""Model behaviour on the real data: clear cases, monotonicity of the linear model, determinism, the gate."""

from __future__ import annotations

import numpy as np
import pytest

from oncology_model.bundle import ModelMetadata
from oncology_model.classifier import Classifier
from oncology_model.config import GateThresholds
from oncology_model.data import Dataset
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Prediction, Tumor
from oncology_model.evaluation import QualityGate
from oncology_model.training import train

CLEARLY_BENIGN = [
    EXAMPLE_BENIGN,
    dict.fromkeys(FEATURES, 1),
    dict(zip(FEATURES, (3, 1, 1, 1, 2, 1, 2, 1, 1), strict=True)),
]
CLEARLY_MALIGNANT = [
    EXAMPLE_MALIGNANT,
    dict.fromkeys(FEATURES, 10),
    dict(zip(FEATURES, (10, 8, 8, 5, 6, 10, 7, 8, 2), strict=True)),
]


@pytest.fixture(params=["logistic_regression", "random_forest"])
def any_classifier(request: pytest.FixtureRequest, classifier: Classifier, rf_classifier: Classifier) -> Classifier:
    return classifier if request.param == "logistic_regression" else rf_classifier


@pytest.mark.parametrize("scores", CLEARLY_MALIGNANT)
def test_a_clearly_malignant_sample_is_malignant(any_classifier: Classifier, scores: dict[str, int]) -> None:
    prediction, probability = any_classifier.predict(Tumor(**scores))
    assert prediction is Prediction.MALIGNANT
    assert probability >= 0.9


@pytest.mark.parametrize("scores", CLEARLY_BENIGN)
def test_a_clearly_benign_sample_is_benign(any_classifier: Classifier, scores: dict[str, int]) -> None:
    prediction, probability = any_classifier.predict(Tumor(**scores))
    assert prediction is Prediction.BENIGN
    assert probability <= 0.1


@pytest.mark.parametrize("feature", FEATURES)
def test_raising_a_feature_never_lowers_the_malignancy_probability(classifier: Classifier, feature: str) -> None:
    """For many random base rows, set `feature` to 1..10 in turn: P(malignant) must not decrease."""
    column = FEATURES.index(feature)
    base = np.random.default_rng(column).integers(1, 11, size=(400, len(FEATURES))).astype(np.float64)
    X = np.repeat(base, 10, axis=0)
    X[:, column] = np.tile(np.arange(1, 11, dtype=np.float64), len(base))
    for probabilities in (classifier.probabilities(X), classifier.pipeline.predict_proba(X)[:, 1]):
        steps = np.diff(probabilities.reshape(len(base), 10), axis=1)
        assert steps.min() >= 0.0, f"{feature}: P(malignant) falls by {-steps.min():.3g} when the score rises"


def test_linear_model_weights_are_all_positive(classifier: Classifier) -> None:
    coefficients = classifier.pipeline.named_steps["model"].coef_[0]
    assert coefficients.shape == (len(FEATURES),)
    assert (coefficients > 0).all(), dict(zip(FEATURES, coefficients.round(3), strict=True))


def test_all_tens_is_more_malignant_than_all_ones(any_classifier: Classifier) -> None:
    X = np.array([[1.0] * 9, [10.0] * 9])
    low, high = any_classifier.probabilities(X)
    assert low < 0.05 < 0.95 < high


def test_retraining_gives_the_same_model(
    classifier: Classifier, model_metadata: ModelMetadata, real_dataset: Dataset
) -> None:
    retrained = train(real_dataset, model_metadata.config)
    grid = np.random.default_rng(11).integers(1, 11, size=(1000, 9)).astype(np.float64)
    grid[::4, FEATURES.index("bare_nuclei")] = np.nan
    assert np.array_equal(retrained.pipeline.predict_proba(grid), classifier.pipeline.predict_proba(grid))
    assert np.array_equal(retrained.pipeline.named_steps["model"].coef_, classifier.pipeline.named_steps["model"].coef_)


def test_predictions_are_repeatable(classifier: Classifier) -> None:
    X = np.random.default_rng(12).integers(1, 11, size=(500, 9)).astype(np.float64)
    assert np.array_equal(classifier.probabilities(X), classifier.probabilities(X.copy()))


def test_hold_out_metrics_meet_the_default_gate(model_metadata: ModelMetadata) -> None:
    evaluation = model_metadata.evaluation
    decision = QualityGate().decide(evaluation)
    assert decision.passed, decision.reasons
    assert model_metadata.gate is not None
    assert model_metadata.gate.passed
    defaults = GateThresholds()
    assert evaluation.value("recall") >= defaults.min_recall
    assert evaluation.value("roc_auc") >= defaults.min_roc_auc
    assert evaluation.value("accuracy") >= defaults.min_accuracy
    assert evaluation.value("specificity") >= defaults.min_specificity
    assert evaluation.n_test == 140


def test_random_forest_hold_out_metrics_meet_the_default_gate(rf_classifier: Classifier) -> None:
    decision = QualityGate().decide(rf_classifier.metadata.evaluation)
    assert decision.passed, decision.reasons


def test_missing_bare_nuclei_gives_a_probability_between_the_extremes(classifier: Classifier) -> None:
    row = [float(v) for v in Tumor(**EXAMPLE_MALIGNANT).as_row()]
    column = FEATURES.index("bare_nuclei")
    X = np.array([row, row, row])
    X[0, column], X[1, column], X[2, column] = 1.0, np.nan, 10.0
    low, missing, high = classifier.probabilities(X)
    assert low <= missing <= high
