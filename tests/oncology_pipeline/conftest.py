"""ECR fixtures and the expected answer for the publish code (Docker fixtures are in tests/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import pytest
from mypy_boto3_ecr import ECRClient

from oncology_model.datamodel import EXAMPLE_BENIGN, Tumor

if TYPE_CHECKING:
    from oncology_model.classifier import Classifier


@pytest.fixture
def ecr_client(moto_endpoint: str) -> ECRClient:
    """A real boto3 ECR client talking to the moto server."""
    return boto3.client("ecr", endpoint_url=moto_endpoint, region_name="eu-central-1")


@pytest.fixture(scope="session")
def benign_answer(session_classifier: Classifier) -> dict[str, Any]:
    """The session bundle's own answer for the benign example: what the image must serve."""
    prediction, probability = session_classifier.predict(Tumor(**EXAMPLE_BENIGN))
    return {"prediction": str(prediction), "probability_malignant": probability}
