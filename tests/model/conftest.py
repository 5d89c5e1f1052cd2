"""The model under test: the bundle named by ONCOLOGY_MODEL_DIR (the pipeline's freshly trained model),
else the session bundle trained on the real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from oncology_model.classifier import Classifier
from oncology_model.service import ServiceSettings, create_app


@pytest.fixture(scope="session")
def bundle_under_test(request: pytest.FixtureRequest) -> Path:
    """The bundle directory to test."""
    if env := os.environ.get("ONCOLOGY_MODEL_DIR"):
        return Path(env)
    path: Path = request.getfixturevalue("model_bundle_dir")
    return path


@pytest.fixture(scope="session")
def classifier_under_test(bundle_under_test: Path) -> Classifier:
    """The model under test, loaded: the tests here judge it, never the session bundle (`session_classifier`)."""
    return Classifier.from_bundle(bundle_under_test)


@pytest.fixture(scope="session")
def service(bundle_under_test: Path) -> Iterator[TestClient]:
    """The web service serving the model under test."""
    with TestClient(create_app(ServiceSettings(model_dir=bundle_under_test))) as client:
        yield client
