"""The classifier: the folded linear path agrees with scikit-learn; the fallback; thresholds; batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Prediction, Tumor
from tests.support.models import RF_VERSION

BARE_NUCLEI = FEATURES.index("bare_nuclei")


def _random_scores(seed: int, n: int = 2000, nan_every: int = 3) -> NDArray[np.float64]:
    X = np.random.default_rng(seed).integers(1, 11, size=(n, len(FEATURES))).astype(np.float64)
    X[::nan_every, BARE_NUCLEI] = np.nan
    return X


def _with_threshold(classifier: Classifier, threshold: float) -> Classifier:
    config = classifier.metadata.config.model_copy(update={"decision_threshold": threshold})
    return Classifier(classifier.pipeline, classifier.metadata.model_copy(update={"config": config}))


def _tumors(seed: int, n: int) -> list[Tumor]:
    rows = np.random.default_rng(seed).integers(1, 11, size=(n, len(FEATURES)))
    return [Tumor(**dict(zip(FEATURES, map(int, row), strict=True))) for row in rows]


def test_logistic_regression_bundle_uses_the_fast_path(session_classifier: Classifier) -> None:
    assert session_classifier._fast is not None


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_path_equals_pipeline_predict_proba(session_classifier: Classifier, seed: int) -> None:
    X = _random_scores(seed)
    expected = session_classifier.pipeline.predict_proba(X)[:, 1]
    got = session_classifier.probabilities(X)
    assert got.shape == (len(X),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_fast_path_with_every_bare_nuclei_missing(session_classifier: Classifier) -> None:
    X = _random_scores(5, n=100, nan_every=1)
    assert np.isnan(X[:, BARE_NUCLEI]).all()
    np.testing.assert_allclose(
        session_classifier.probabilities(X), session_classifier.pipeline.predict_proba(X)[:, 1], rtol=0, atol=1e-9
    )


def test_fast_path_does_not_modify_its_input(session_classifier: Classifier) -> None:
    X = _random_scores(6, n=50)
    before = X.copy()
    session_classifier.probabilities(X)
    assert np.array_equal(X, before, equal_nan=True)


def test_random_forest_bundle_uses_the_fallback(rf_classifier: Classifier) -> None:
    assert rf_classifier._fast is None
    X = _random_scores(7, n=300)
    assert np.array_equal(rf_classifier.probabilities(X), rf_classifier.pipeline.predict_proba(X)[:, 1])
    assert rf_classifier.version == RF_VERSION
    assert rf_classifier.predict(Tumor(**EXAMPLE_MALIGNANT))[0] is Prediction.MALIGNANT
    assert rf_classifier.predict(Tumor(**EXAMPLE_BENIGN))[0] is Prediction.BENIGN


def test_from_bundle(model_bundle_dir: Path, session_classifier: Classifier) -> None:
    loaded = Classifier.from_bundle(model_bundle_dir)
    assert loaded.version == "20261125T000000Z-7e570001"
    assert loaded.metadata == session_classifier.metadata
    assert loaded.metadata.threshold is not None
    assert loaded.threshold == loaded.metadata.config.decision_threshold == loaded.metadata.threshold.threshold


def test_predict_returns_prediction_and_probability(session_classifier: Classifier) -> None:
    prediction, probability = session_classifier.predict(Tumor(**EXAMPLE_MALIGNANT))
    assert prediction is Prediction.MALIGNANT
    assert isinstance(probability, float)
    assert 0.0 <= probability <= 1.0
    row = np.array([list(Tumor(**EXAMPLE_MALIGNANT).as_row())], dtype=np.float64)
    assert probability == pytest.approx(float(session_classifier.pipeline.predict_proba(row)[0, 1]), abs=1e-9)


def test_predict_many_keeps_order_and_equals_predict(session_classifier: Classifier, rf_classifier: Classifier) -> None:
    tumors = _tumors(8, 60)
    for model in (session_classifier, rf_classifier):
        many = model.predict_many(tumors)
        assert len(many) == 60
        singles = [model.predict(t) for t in tumors]
        assert [p for p, _ in many] == [p for p, _ in singles]
        np.testing.assert_allclose([q for _, q in many], [q for _, q in singles], rtol=0, atol=1e-12)


def test_predict_many_of_nothing(session_classifier: Classifier) -> None:
    assert session_classifier.predict_many([]) == []


def test_predictions_follow_the_threshold(session_classifier: Classifier) -> None:
    tumors = _tumors(9, 200)
    for prediction, probability in session_classifier.predict_many(tumors):
        assert (prediction is Prediction.MALIGNANT) == (probability >= session_classifier.threshold)


def test_decision_threshold_from_metadata_is_applied(session_classifier: Classifier) -> None:
    tumor = Tumor(**EXAMPLE_BENIGN)
    _, probability = session_classifier.predict(tumor)
    assert 0.0 < probability < 0.25
    at = _with_threshold(session_classifier, probability)
    above = _with_threshold(session_classifier, float(np.nextafter(probability, 1.0)))
    assert at.threshold == probability
    assert at.predict(tumor) == (Prediction.MALIGNANT, probability)  # P >= threshold is malignant
    assert above.predict(tumor) == (Prediction.BENIGN, probability)


def test_a_high_threshold_turns_a_borderline_malignant_benign(session_classifier: Classifier) -> None:
    tumors = _tumors(10, 500)
    probabilities = [p for _, p in session_classifier.predict_many(tumors)]
    borderline = next(t for t, p in zip(tumors, probabilities, strict=True) if 0.3 <= p < 0.9)
    assert session_classifier.predict(borderline)[0] is Prediction.MALIGNANT
    assert _with_threshold(session_classifier, 0.9).predict(borderline)[0] is Prediction.BENIGN


@pytest.mark.parametrize("seed", [11, 12])
def test_one_row_equals_the_array_path_and_scikit_learn(session_classifier: Classifier, seed: int) -> None:
    X = _random_scores(seed, n=300)
    one_by_one = [session_classifier.probability(row) for row in X.tolist()]
    assert all(isinstance(p, float) for p in one_by_one)
    np.testing.assert_allclose(one_by_one, session_classifier.probabilities(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(one_by_one, session_classifier.pipeline.predict_proba(X)[:, 1], rtol=0, atol=1e-9)


def test_one_row_of_integers_as_the_service_passes_it(session_classifier: Classifier) -> None:
    tumor = Tumor(**EXAMPLE_MALIGNANT)
    assert session_classifier.probability(tumor.as_row()) == session_classifier.predict(tumor)[1]


def test_one_row_with_the_fallback(rf_classifier: Classifier) -> None:
    X = _random_scores(13, n=20)
    expected = rf_classifier.pipeline.predict_proba(X)[:, 1]
    assert [rf_classifier.probability(row) for row in X.tolist()] == expected.tolist()


def test_one_row_far_beyond_the_sigmoids_range(session_classifier: Classifier) -> None:
    fast = session_classifier._fast
    assert fast is not None
    row = [1.0] * len(FEATURES)
    for bias, expected in ((-1000.0, 0.0), (1000.0, 1.0)):
        original, fast.bias = fast.bias, bias
        try:
            with np.errstate(over="ignore"):
                assert fast.one(row) == expected == float(fast(np.array([row]))[0])
        finally:
            fast.bias = original


def test_label_is_malignant_from_the_threshold_up(session_classifier: Classifier) -> None:
    threshold = session_classifier.threshold
    assert session_classifier.label(threshold) is Prediction.MALIGNANT
    assert session_classifier.label(float(np.nextafter(threshold, 0.0))) is Prediction.BENIGN
    X = _random_scores(14, n=200, nan_every=5)
    assert [label for label, _ in session_classifier.predict_rows(X)] == [
        session_classifier.label(p) for p in session_classifier.probabilities(X)
    ]
