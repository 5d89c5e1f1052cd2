"""The session bundle, loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncology_model.classifier import Classifier


@pytest.fixture(scope="session")
def classifier(model_bundle_dir: Path) -> Classifier:
    """The session bundle (logistic regression on the real data)."""
    return Classifier.from_bundle(model_bundle_dir)
