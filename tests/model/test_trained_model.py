"""Behaviour of the trained model, and the service around it (run by the pipeline's test stage)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from oncology_model.classifier import Classifier
from oncology_model.config import GateThresholds
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Prediction, Tumor


def test_clearly_malignant_sample_is_malignant(classifier: Classifier) -> None:
    prediction, probability = classifier.predict(Tumor(**EXAMPLE_MALIGNANT))
    assert prediction is Prediction.MALIGNANT
    assert probability > 0.9


def test_clearly_benign_sample_is_benign(classifier: Classifier) -> None:
    prediction, probability = classifier.predict(Tumor(**EXAMPLE_BENIGN))
    assert prediction is Prediction.BENIGN
    assert probability < 0.1


def test_all_ones_is_benign_and_all_tens_malignant(classifier: Classifier) -> None:
    lowest, highest = classifier.probabilities(np.array([[1.0] * 9, [10.0] * 9]))
    assert lowest < classifier.threshold <= highest


@pytest.mark.parametrize("feature", FEATURES)
def test_raising_a_feature_never_lowers_malignancy(classifier: Classifier, feature: str) -> None:
    """Row by row for the linear model; on average over many rows for the tree ensembles."""
    rng = np.random.default_rng(7)
    base = rng.integers(1, 10, size=(200, 9)).astype(np.float64)
    raised = base.copy()
    raised[:, FEATURES.index(feature)] += 1
    before, after = classifier.probabilities(base), classifier.probabilities(raised)
    if classifier.metadata.config.estimator == "logistic_regression":
        assert np.all(after >= before - 1e-12)
    else:
        assert after.mean() >= before.mean()


def test_missing_bare_nuclei_is_imputed(classifier: Classifier) -> None:
    row = np.array([list(EXAMPLE_MALIGNANT.values())], dtype=np.float64)
    row[0, FEATURES.index("bare_nuclei")] = np.nan
    probability = classifier.probabilities(row)[0]
    assert 0.0 <= probability <= 1.0 and not np.isnan(probability)


def test_predictions_are_deterministic(classifier: Classifier) -> None:
    tumors = [Tumor(**EXAMPLE_BENIGN), Tumor(**EXAMPLE_MALIGNANT)] * 5
    assert classifier.predict_many(tumors) == classifier.predict_many(tumors)


def test_recorded_hold_out_metrics_meet_the_default_gate(classifier: Classifier) -> None:
    metrics = classifier.metadata.evaluation.metrics
    gate = GateThresholds()
    assert metrics["recall"].value >= gate.min_recall
    assert metrics["roc_auc"].value >= gate.min_roc_auc
    assert metrics["accuracy"].value >= gate.min_accuracy


def test_service_answers_like_the_classifier(service: TestClient, classifier: Classifier) -> None:
    response = service.post("/v1/predictions", json=EXAMPLE_MALIGNANT)
    assert response.status_code == 200
    prediction, probability = classifier.predict(Tumor(**EXAMPLE_MALIGNANT))
    assert response.json() == {
        "prediction": prediction.value,
        "probability_malignant": pytest.approx(probability),
        "model_version": classifier.version,
    }


def test_service_batch_matches_single_predictions(service: TestClient) -> None:
    tumors = [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, {**EXAMPLE_BENIGN, "bare_nuclei": 10}]
    batch = service.post("/v1/predictions/batch", json={"tumors": tumors}).json()["predictions"]
    singles = [service.post("/v1/predictions", json=t).json() for t in tumors]
    assert [b["prediction"] for b in batch] == [s["prediction"] for s in singles]
    assert [b["probability_malignant"] for b in batch] == pytest.approx(
        [s["probability_malignant"] for s in singles], rel=1e-12
    )


def test_service_reports_the_model_version(service: TestClient, classifier: Classifier) -> None:
    assert service.get("/readyz").json()["model_version"] == classifier.version
    assert service.get("/v1/model").json()["model_version"] == classifier.version


def test_the_golden_set_is_what_the_model_and_its_service_answer(service: TestClient, classifier: Classifier) -> None:
    """The rows the deploy verification asks the cluster: the loaded bundle and the service answer them as packaged."""
    golden = classifier.metadata.golden
    assert golden, "the bundle holds no golden set"
    rows = np.array([[case.tumor[f] for f in FEATURES] for case in golden], dtype=np.float64)
    expected = [case.probability_malignant for case in golden]
    assert classifier.probabilities(rows) == pytest.approx(expected, abs=1e-9)
    tumors = [case.tumor for case in golden[:1000]]
    answers = service.post("/v1/predictions/batch", json={"tumors": tumors}).json()["predictions"]
    assert [a["probability_malignant"] for a in answers] == pytest.approx(expected[:1000], abs=1e-9)
