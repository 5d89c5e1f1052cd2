"""ECR fixtures and the expected answer for the publish code (Docker fixtures are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_ecr import ECRClient

from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, Tumor

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def ecr_client(moto_endpoint: str) -> ECRClient:
    """A real boto3 ECR client talking to the moto server."""
    return boto3.client("ecr", endpoint_url=moto_endpoint, region_name="eu-central-1")


@pytest.fixture(scope="session")
def benign_answer(model_bundle_dir: Path) -> dict[str, Any]:
    """The bundle's own answer for the benign example: what the image must serve."""
    prediction, probability = Classifier.from_bundle(model_bundle_dir).predict(Tumor(**EXAMPLE_BENIGN))
    return {"prediction": str(prediction), "probability_malignant": probability}
