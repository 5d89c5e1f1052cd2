"""Docker, registry and ECR fixtures for the publish code; the serving image is built once per session."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import docker
import pytest
from mypy_boto3_ecr import ECRClient

from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, Tumor
from oncology_pipeline.image import ImageInfo, build_image, prepare_build_context
from tests.support import docker_env

PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BuiltImage:
    """The session's serving image, the secret build arg it was built with, and its build log."""

    info: ImageInfo
    secret: str
    build_log: list[str]


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client of the real Docker engine (fails, never skips, when there is none)."""
    return docker_env.docker_client()


@pytest.fixture(scope="session")
def registry_address() -> str:
    """The authenticated local registry (htpasswd user AWS, moto's ECR password)."""
    return docker_env.registry_address()


@pytest.fixture
def ecr_client(moto_endpoint: str) -> ECRClient:
    """A real boto3 ECR client talking to the moto server."""
    return boto3.client("ecr", endpoint_url=moto_endpoint, region_name="eu-central-1")


@pytest.fixture(scope="session")
def build_context(model_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build context for the session's model bundle."""
    return prepare_build_context(PROJECT_DIR, model_bundle_dir, tmp_path_factory.mktemp("image") / "context")


@pytest.fixture(scope="session")
def built_image(docker_client: Any, build_context: Path, model_bundle_dir: Path) -> Iterator[BuiltImage]:
    """The serving image on oncology-base:bookworm, built with a secret index URL in its build args."""
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    secret = f"s3cr3t-{secrets.token_hex(16)}"
    tag = f"oncology-model-test:{uuid.uuid4().hex[:12]}"
    log: list[str] = []
    info = build_image(
        docker_client,
        build_context,
        tag,
        {
            "BASE_IMAGE": docker_env.BASE_IMAGE,
            "VERSION": "0.1.0",
            "MODEL_VERSION": Classifier.from_bundle(model_bundle_dir).version,
            "REVISION": "0123456789abcdef0123456789abcdef01234567",
            "PIP_EXTRA_INDEX_URL": f"https://ci-bot:{secret}@nexus.example.invalid/repository/pypi/simple",
        },
        log.append,
    )
    yield BuiltImage(info=info, secret=secret, build_log=log)
    # The builder stage keeps its build args in its own (never pushed) history: drop it with the image.
    for image in docker_env.builder_images_with(docker_client, secret):
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image, force=True)
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(info.id, force=True)


@pytest.fixture(scope="session")
def benign_answer(model_bundle_dir: Path) -> dict[str, Any]:
    """The bundle's own answer for the benign example: what the image must serve."""
    prediction, probability = Classifier.from_bundle(model_bundle_dir).predict(Tumor(**EXAMPLE_BENIGN))
    return {"prediction": str(prediction), "probability_malignant": probability}
