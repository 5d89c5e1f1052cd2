"""Session-wide servers, a trained model bundle, and per-test isolation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oncology_model.bundle import ModelMetadata
from oncology_model.classifier import Classifier
from tests.support.data import real_data
from tests.support.models import train_bundle
from tests.support.moto_server import moto_server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session; tests use their own buckets/repositories."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def real_csv() -> bytes:
    """The real data set as UCI-layout CSV bytes."""
    return real_data()


@pytest.fixture(scope="session")
def model_bundle_dir(tmp_path_factory: pytest.TempPathFactory, real_csv: bytes) -> Path:
    """A bundle trained on the real data (logistic regression, default config); do not modify it."""
    directory = tmp_path_factory.mktemp("bundle") / "model"
    train_bundle(real_csv, directory, version="20261125T000000Z-test0001")
    return directory


@pytest.fixture(scope="session")
def model_metadata(model_bundle_dir: Path) -> ModelMetadata:
    """The session bundle's metadata."""
    return Classifier.from_bundle(model_bundle_dir).metadata


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test reach a real AWS account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
