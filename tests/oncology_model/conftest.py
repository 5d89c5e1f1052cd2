"""Fixtures shared by the model package's tests: the parsed real data, a random-forest bundle (the session's
logistic-regression bundle and `session_classifier` are in tests/conftest.py).

The model code (scikit-learn) is imported inside the fixtures: a suite that needs none of them, such as the
flow tests' test stage (`test_datamodel.py`), starts without it (4 s less per pytest process)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from oncology_model.classifier import Classifier
    from oncology_model.data import Dataset


@pytest.fixture(scope="session")
def real_dataset(real_csv: bytes) -> Dataset:
    """The real data set, validated."""
    from oncology_model.data import parse_csv

    return parse_csv(real_csv)


@pytest.fixture(scope="session")
def rf_bundle_dir(tmp_path_factory: pytest.TempPathFactory, real_csv: bytes) -> Path:
    """A random-forest bundle trained on the real data (few trees, to stay fast); do not modify it."""
    from oncology_model.config import TrainingConfig
    from tests.support.models import RF_VERSION, train_bundle

    directory = tmp_path_factory.mktemp("rf-bundle") / "model"
    config = TrainingConfig(estimator="random_forest", hyperparameters={"n_estimators": 30})
    train_bundle(real_csv, directory, version=RF_VERSION, config=config)
    return directory


@pytest.fixture(scope="session")
def rf_classifier(rf_bundle_dir: Path) -> Classifier:
    """The random-forest bundle, loaded."""
    from oncology_model.classifier import Classifier

    return Classifier.from_bundle(rf_bundle_dir)


@pytest.fixture
def bundle_copy(model_bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle that a test may damage."""
    target = tmp_path / "bundle-copy" / "model"
    shutil.copytree(model_bundle_dir, target)
    return target
