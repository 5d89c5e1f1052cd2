"""Training: configuration, pipeline, split and reproducibility."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from oncology_model.config import TrainingConfig, first_error
from oncology_model.data import Dataset
from oncology_model.datamodel import FEATURES
from oncology_model.training import CV_SCORING, build_pipeline, choose_threshold, split_dataset, train

if TYPE_CHECKING:
    from oncology_model.classifier import Classifier


def test_config_defaults() -> None:
    config = TrainingConfig()
    assert config.estimator == "logistic_regression"
    assert config.hyperparameters == {}
    assert (config.test_size, config.seed, config.cv_folds, config.decision_threshold) == (0.2, 42, 5, None)
    assert config.target_recall == 0.98


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("test_size", 0.0),
        ("test_size", -0.1),
        ("test_size", 0.5),
        ("test_size", 0.9),
        ("cv_folds", 1),
        ("cv_folds", 21),
        ("decision_threshold", 0.0),
        ("decision_threshold", 1.0),
        ("estimator", "svm"),
    ],
)
def test_config_refuses_out_of_bounds_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingConfig.model_validate({field: value})
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


@pytest.mark.parametrize(
    ("field", "value"), [("test_size", 0.01), ("test_size", 0.49), ("cv_folds", 2), ("cv_folds", 20)]
)
def test_config_accepts_values_at_the_bounds(field: str, value: object) -> None:
    assert getattr(TrainingConfig.model_validate({field: value}), field) == value


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"test_size": 0.5}, "test_size: Input should be less than 0.5 (got 0.5)"),
        ({"cv_folds": 1}, "cv_folds: Input should be greater than or equal to 2 (got 1)"),
        ({"decision_threshold": 1.5}, "decision_threshold: Input should be less than 1 (got 1.5)"),
        ({"cv_folds": 0, "test_size": 2}, "test_size: Input should be less than 0.5 (got 2) (and 1 more)"),
    ],
)
def test_first_error_is_one_line_naming_the_field_the_rule_and_the_value(values: dict[str, object], line: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingConfig.model_validate(values)
    assert first_error(caught.value) == line


def test_config_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        TrainingConfig.model_validate({"learning_rate": 0.1})
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("learning_rate",), "extra_forbidden")]


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        TrainingConfig().seed = 1


@pytest.mark.parametrize(
    ("estimator", "cls"),
    [
        ("logistic_regression", LogisticRegression),
        ("random_forest", RandomForestClassifier),
        ("gradient_boosting", GradientBoostingClassifier),
    ],
)
def test_build_pipeline_steps_and_seed(estimator: Any, cls: type) -> None:
    pipeline = build_pipeline(TrainingConfig(estimator=estimator, seed=7))
    assert [name for name, _ in pipeline.steps] == ["impute", "scale", "model"]
    assert pipeline.named_steps["impute"].strategy == "median"
    model: Any = pipeline.named_steps["model"]
    assert model.random_state == 7
    assert isinstance(model, cls)


def test_build_pipeline_passes_hyperparameters_and_keeps_an_explicit_random_state() -> None:
    config = TrainingConfig(hyperparameters={"C": 0.5, "max_iter": 500, "random_state": 3}, seed=7)
    model = build_pipeline(config).named_steps["model"]
    assert (model.C, model.max_iter, model.random_state) == (0.5, 500, 3)


@pytest.mark.parametrize(
    ("estimator", "hyperparameters"),
    [
        pytest.param("logistic_regression", {"bogus": 1}, id="lr-unknown-name"),
        pytest.param("random_forest", {"C": 1.0}, id="rf-unknown-name"),
        pytest.param("logistic_regression", {"C": -1.0}, id="lr-negative-C"),
        pytest.param("random_forest", {"n_estimators": 0}, id="rf-zero-trees"),
        pytest.param("logistic_regression", {"solver": "nonsense"}, id="lr-unknown-solver"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_hyperparameters(
    real_dataset: Dataset, estimator: Any, hyperparameters: dict[str, Any]
) -> None:
    config = TrainingConfig(estimator=estimator, hyperparameters=hyperparameters, cv_folds=2)
    with pytest.raises(ValueError) as caught:
        train(real_dataset, config)
    message = str(caught.value)
    assert message.startswith("hyperparameters: "), message[:200]
    assert estimator in message


def test_split_is_stratified_and_sized(real_dataset: Dataset) -> None:
    split = split_dataset(real_dataset, TrainingConfig())
    assert (len(split.y_train), len(split.y_test)) == (559, 140)
    assert split.X_train.shape == (559, 9)
    assert split.X_test.shape == (140, 9)
    assert int(split.y_test.sum()) == 48  # 241 of 699 malignant, stratified: round(140 * 241 / 699)
    assert int(split.y_train.sum()) + int(split.y_test.sum()) == 241


def test_same_seed_same_split(real_dataset: Dataset) -> None:
    first = split_dataset(real_dataset, TrainingConfig(seed=5))
    second = split_dataset(real_dataset, TrainingConfig(seed=5))
    assert np.array_equal(first.X_test, second.X_test, equal_nan=True)
    assert np.array_equal(first.y_test, second.y_test)


def test_different_seed_different_split(real_dataset: Dataset) -> None:
    first = split_dataset(real_dataset, TrainingConfig(seed=1))
    second = split_dataset(real_dataset, TrainingConfig(seed=2))
    assert first.X_test.shape == second.X_test.shape
    assert not np.array_equal(first.X_test, second.X_test, equal_nan=True)


def test_training_is_deterministic(real_dataset: Dataset, session_classifier: Classifier) -> None:
    """Two trainings here and the session bundle's (trained once per run, saved and loaded) with its configuration:
    the same probabilities to the bit, missing scores included, the same weights and cross-validation scores."""
    config = session_classifier.metadata.config
    first, second = train(real_dataset, config), train(real_dataset, config)
    grid = np.random.default_rng(11).integers(1, 11, size=(1000, 9)).astype(np.float64)
    grid[::4, FEATURES.index("bare_nuclei")] = np.nan
    saved = session_classifier.pipeline
    assert np.array_equal(first.pipeline.predict_proba(grid), saved.predict_proba(grid))
    assert np.array_equal(second.pipeline.predict_proba(grid), saved.predict_proba(grid))
    assert np.array_equal(first.pipeline.named_steps["model"].coef_, saved.named_steps["model"].coef_)
    assert np.array_equal(
        first.pipeline.predict_proba(first.split.X_test), second.pipeline.predict_proba(second.split.X_test)
    )
    assert first.cv_scores == second.cv_scores


def test_a_linear_model_of_the_real_data_weighs_every_score_positively(session_classifier: Classifier) -> None:
    coefficients = session_classifier.pipeline.named_steps["model"].coef_[0]
    assert coefficients.shape == (len(FEATURES),)
    assert (coefficients > 0).all(), dict(zip(FEATURES, coefficients.round(3), strict=True))


@pytest.mark.parametrize(
    ("estimator", "hyperparameters"),
    [
        ("logistic_regression", {}),
        ("random_forest", {"n_estimators": 20}),
        ("gradient_boosting", {"n_estimators": 20}),
    ],
)
def test_every_estimator_trains(real_dataset: Dataset, estimator: Any, hyperparameters: dict[str, Any]) -> None:
    config = TrainingConfig(estimator=estimator, hyperparameters=hyperparameters, cv_folds=3)
    model = train(real_dataset, config)
    assert sorted(model.cv_scores) == sorted(CV_SCORING)
    assert all(len(scores) == 3 for scores in model.cv_scores.values())
    assert all(0.9 <= s <= 1.0 for s in model.cv_scores["roc_auc"])
    proba = model.pipeline.predict_proba(model.split.X_test)
    assert proba.shape == (140, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert float(((proba[:, 1] >= 0.5) == model.split.y_test).mean()) >= 0.9


def test_training_handles_missing_bare_nuclei(real_dataset: Dataset) -> None:
    model = train(real_dataset, TrainingConfig(cv_folds=2))
    row = np.array([[5, 1, 1, 1, 2, np.nan, 3, 1, 1]], dtype=np.float64)
    proba = model.pipeline.predict_proba(row)
    assert np.isfinite(proba).all()


def test_the_threshold_is_chosen_on_the_training_split_to_reach_the_target_recall(real_dataset: Dataset) -> None:
    model = train(real_dataset, TrainingConfig())
    choice = model.threshold
    assert choice.target_recall == 0.98 and choice.cv_recall >= 0.98 and 0 < choice.threshold < 0.5
    # the hold-out rows play no part: the same choice comes from the training rows alone
    again = train(real_dataset, TrainingConfig(test_size=0.2))
    assert again.threshold == choice


def test_choose_threshold_takes_the_largest_threshold_that_reaches_the_target() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=np.int64)
    p = np.array([0.9, 0.8, 0.4, 0.3, 0.35, 0.2, 0.1, 0.05])
    assert choose_threshold(y, p, 0.75).model_dump() == {
        "threshold": 0.4,
        "target_recall": 0.75,
        "cv_recall": 0.75,
        "cv_specificity": 1.0,
    }
    assert choose_threshold(y, p, 1.0).threshold == 0.3 and choose_threshold(y, p, 1.0).cv_specificity == 0.75
    fixed = choose_threshold(y, p, 0.99, fixed=0.5)
    assert (fixed.threshold, fixed.target_recall, fixed.cv_recall) == (0.5, None, 0.5)
