"""Fault tests: the flow tests' Prefect server, buckets and S3 fault proxy (tests/conftest.py), production seeded
in S3 and in a Kubernetes stand-in, and a fault-injecting proxy in front of the local registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oncology_model.bundle import ModelMetadata
from oncology_pipeline import buildcontext
from tests.support.clusters import Scripted, scripted_standin
from tests.support.models import train_bundle
from tests.support.registry_proxy import RegistryProxy, registry_proxy
from tests.support.stacks import Stack


@pytest.fixture(autouse=True)
def _on_the_prefect_server(prefect_server: None) -> None:
    """Every fault test runs against the session's Prefect test server (the flow tests' one)."""


PRODUCTION_VERSION = "20261124T000000Z-9e7a0002"


@pytest.fixture(scope="session")
def production_bundle(real_csv: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An earlier model version, trained on the real data: production in the scripted cluster's cases."""
    directory = tmp_path_factory.mktemp("production") / "model"
    train_bundle(real_csv, directory, version=PRODUCTION_VERSION)
    return directory


@pytest.fixture
def scripted(
    stack: Stack, tmp_path: Path, model_bundle_dir: Path, model_metadata: ModelMetadata, production_bundle: Path
) -> Iterator[Scripted]:
    """Production (an earlier version) serving OLD on a scripted cluster, annotated; the session model a
    candidate. No container runs: for faults that never reach a real pod."""
    candidate = (model_metadata.model_version, model_bundle_dir)
    with scripted_standin(
        stack.s3, stack.settings, stack.overrides, tmp_path, candidate, production_bundle=production_bundle
    ) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def registry_faults(registry_address: str) -> Iterator[RegistryProxy]:
    """The local registry behind a TCP proxy that refuses or cuts pushes (one per module; rules cleared per test)."""
    with registry_proxy(registry_address) as running:
        yield running


@pytest.fixture
def registry(registry_faults: RegistryProxy) -> Iterator[RegistryProxy]:
    """The registry proxy with no rules and an empty request log."""
    registry_faults.clear()
    yield registry_faults
    registry_faults.clear()


@pytest.fixture(scope="module")
def publish_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One work_dir for the module's publish runs, as on a worker; its wheelhouse is the user's (the one the
    session's image was built from), so no publish downloads the dependencies again."""
    work = tmp_path_factory.mktemp("publish-work")
    (work / "cache").mkdir()
    (work / "cache" / "wheelhouse").symlink_to(buildcontext._cache_root(), target_is_directory=True)
    return work
