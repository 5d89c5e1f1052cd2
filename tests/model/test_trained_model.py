"""Behaviour of the model under test, and the service around it (run by the pipeline's test stage against each new
model): clear cases, raising a score never lowers the malignancy probability, a missing score, the recorded metrics
and golden set, the service answering as the model."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from oncology_model.classifier import Classifier
from oncology_model.config import GateThresholds
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Prediction, Tumor

CLEARLY_BENIGN = {
    "example": EXAMPLE_BENIGN,
    "all-ones": dict.fromkeys(FEATURES, 1),
    "typical": dict(zip(FEATURES, (3, 1, 1, 1, 2, 1, 2, 1, 1), strict=True)),
}
CLEARLY_MALIGNANT = {
    "example": EXAMPLE_MALIGNANT,
    "all-tens": dict.fromkeys(FEATURES, 10),
    "typical": dict(zip(FEATURES, (10, 8, 8, 5, 6, 10, 7, 8, 2), strict=True)),
}


def _linear(classifier: Classifier) -> bool:
    return classifier.metadata.config.estimator == "logistic_regression"


@pytest.mark.parametrize("scores", list(CLEARLY_MALIGNANT.values()), ids=list(CLEARLY_MALIGNANT))
def test_a_clearly_malignant_sample_is_malignant(classifier_under_test: Classifier, scores: dict[str, int]) -> None:
    prediction, probability = classifier_under_test.predict(Tumor(**scores))
    assert prediction is Prediction.MALIGNANT
    assert probability > 0.9


@pytest.mark.parametrize("scores", list(CLEARLY_BENIGN.values()), ids=list(CLEARLY_BENIGN))
def test_a_clearly_benign_sample_is_benign(classifier_under_test: Classifier, scores: dict[str, int]) -> None:
    prediction, probability = classifier_under_test.predict(Tumor(**scores))
    assert prediction is Prediction.BENIGN
    assert probability < 0.1


@pytest.mark.parametrize("feature", FEATURES)
def test_raising_a_feature_never_lowers_the_malignancy_probability(
    classifier_under_test: Classifier, feature: str
) -> None:
    """For 400 random rows, set `feature` to 1..10 in turn, through the served path and scikit-learn's: no step
    lowers P(malignant) for the linear model; for tree ensembles the average step does not."""
    column = FEATURES.index(feature)
    base = np.random.default_rng(column).integers(1, 11, size=(400, len(FEATURES))).astype(np.float64)
    X = np.repeat(base, 10, axis=0)
    X[:, column] = np.tile(np.arange(1, 11, dtype=np.float64), len(base))
    for probabilities in (
        classifier_under_test.probabilities(X),
        classifier_under_test.pipeline.predict_proba(X)[:, 1],
    ):
        steps = np.diff(probabilities.reshape(len(base), 10), axis=1)
        worst = steps.min() if _linear(classifier_under_test) else steps.mean()
        assert worst >= -1e-12, f"{feature}: P(malignant) falls by {-worst:.3g} when the score rises"


def test_a_missing_bare_nuclei_is_imputed(classifier_under_test: Classifier) -> None:
    """A probability, never NaN; for the linear model between those of the lowest and the highest score."""
    row = [float(v) for v in Tumor(**EXAMPLE_MALIGNANT).as_row()]
    column = FEATURES.index("bare_nuclei")
    X = np.array([row, row, row])
    X[0, column], X[1, column], X[2, column] = 1.0, np.nan, 10.0
    low, missing, high = classifier_under_test.probabilities(X)
    assert 0.0 <= missing <= 1.0
    if _linear(classifier_under_test):
        assert low <= missing <= high


def test_the_recorded_metrics_meet_the_default_gate(classifier_under_test: Classifier) -> None:
    """The default gate's floors on the hold-out rows (the floors this suite held before the merge: recall, ROC AUC,
    accuracy; the gate itself judged the cross-validation at training)."""
    evaluation = classifier_under_test.metadata.evaluation
    floors = GateThresholds()
    for name, minimum in (
        ("recall", floors.min_recall),
        ("roc_auc", floors.min_roc_auc),
        ("accuracy", floors.min_accuracy),
    ):
        assert evaluation.value(name) >= minimum, f"hold-out {name} {evaluation.value(name):.4f} < {minimum}"


def test_service_answers_like_the_classifier(service: TestClient, classifier_under_test: Classifier) -> None:
    response = service.post("/v1/predictions", json=EXAMPLE_MALIGNANT)
    assert response.status_code == 200
    prediction, probability = classifier_under_test.predict(Tumor(**EXAMPLE_MALIGNANT))
    assert response.json() == {
        "prediction": prediction.value,
        "probability_malignant": pytest.approx(probability),
        "model_version": classifier_under_test.version,
    }


def test_service_batch_matches_single_predictions(service: TestClient) -> None:
    tumors = [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, {**EXAMPLE_BENIGN, "bare_nuclei": 10}]
    batch = service.post("/v1/predictions/batch", json={"tumors": tumors}).json()["predictions"]
    singles = [service.post("/v1/predictions", json=t).json() for t in tumors]
    assert [b["prediction"] for b in batch] == [s["prediction"] for s in singles]
    assert [b["probability_malignant"] for b in batch] == pytest.approx(
        [s["probability_malignant"] for s in singles], rel=1e-12
    )


def test_service_reports_the_model_version(service: TestClient, classifier_under_test: Classifier) -> None:
    assert service.get("/readyz").json()["model_version"] == classifier_under_test.version
    assert service.get("/v1/model").json()["model_version"] == classifier_under_test.version


def test_the_golden_set_is_what_the_model_and_its_service_answer(
    service: TestClient, classifier_under_test: Classifier
) -> None:
    """The rows the deploy verification asks the cluster: the loaded bundle and the service answer them with the
    probabilities recorded when the model was trained (another process: the model's determinism, as packaged)."""
    golden = classifier_under_test.metadata.golden
    assert golden, "the bundle holds no golden set"
    rows = np.array([[case.tumor[f] for f in FEATURES] for case in golden], dtype=np.float64)
    expected = [case.probability_malignant for case in golden]
    assert classifier_under_test.probabilities(rows) == pytest.approx(expected, abs=1e-9)
    tumors = [case.tumor for case in golden[:1000]]
    answers = service.post("/v1/predictions/batch", json={"tumors": tumors}).json()["predictions"]
    assert [a["probability_malignant"] for a in answers] == pytest.approx(expected[:1000], abs=1e-9)
