"""Session-wide servers, a trained model bundle, the serving image built once, and per-test isolation."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from prefect.testing.utilities import prefect_test_harness

from oncology_model.bundle import ModelMetadata
from oncology_model.classifier import Classifier
from oncology_pipeline.buildcontext import prepare_build_context
from oncology_pipeline.image import ImageInfo, build_image
from tests.support import docker_env
from tests.support.data import real_data
from tests.support.fault_proxy import FaultProxy, fault_proxy
from tests.support.models import train_bundle
from tests.support.moto_server import moto_server
from tests.support.workloads import Workloads, push_workloads

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One throw-away Prefect server (own PREFECT_HOME and database) for every flow and fault test: one, because
    Prefect's event-loop threads keep the API URL they started with."""
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=60):
            yield


@pytest.fixture(scope="session")
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """The fault-injecting proxy in front of the session's moto server."""
    with fault_proxy(moto_endpoint) as running:
        yield running


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
    train_bundle(real_csv, directory, version="20261125T000000Z-7e570001")
    return directory


@pytest.fixture(scope="session")
def model_metadata(model_bundle_dir: Path) -> ModelMetadata:
    """The session bundle's metadata."""
    return Classifier.from_bundle(model_bundle_dir).metadata


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


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test reach a real AWS account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def workloads(
    docker_client: Any,
    registry_address: str,
    built_image: BuiltImage,
    model_metadata: ModelMetadata,
    real_csv: bytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> Workloads:
    """The serving image and an earlier model version's image, plus one that crashes, in the local registry."""
    work = tmp_path_factory.mktemp("workloads")
    previous_bundle = work / "previous"
    train_bundle(real_csv, previous_bundle, version="20261124T000000Z-9e7a0001")
    return push_workloads(
        docker_client, registry_address, built_image.info.id, model_metadata.model_version, previous_bundle, work
    )


#: What a test needs, by the fixtures it uses: `docker` (the engine, the registry, the serving image),
#: `cluster` (the Kubernetes stand-in), `slow` (a Prefect server, whole flows). `pytest -m "not docker and not
#: cluster and not slow"` is the quick suite; `make test` runs them all and fails when a component is missing.
MARKS_BY_FIXTURE = {
    "docker": {"docker_client", "registry_address", "built_image", "build_context", "workloads"},
    "cluster": {"standin", "serving", "cluster"},
    "slow": {"prefect_server", "alert_server", "stack"},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the fixtures it uses (see MARKS_BY_FIXTURE)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for mark, fixtures in MARKS_BY_FIXTURE.items():
            if used & fixtures:
                item.add_marker(getattr(pytest.mark, mark))
