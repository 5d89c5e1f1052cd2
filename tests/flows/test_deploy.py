"""The `deploy` flow under a real Prefect server, through the official kubernetes client, against the
Kubernetes stand-in whose pods are Docker containers of the images pushed to the local registry.

Production is the previous model version, served by its image; after every outcome the invariant holds: the
pointer, the cluster's image and annotations, and the release records agree, and nothing is lost. Rollouts that
fail (an image that cannot be pulled, a crashing container, a verification mismatch, a hanging rollout, an
interruption) are cases of tests/faults/test_faults.py, with the other faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from prefect.client.schemas.objects import StateType

from flows.deploy import deploy
from oncology_model.bundle import ModelMetadata
from oncology_pipeline import releases
from oncology_pipeline.errors import ClusterError, ConfigurationError
from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn
from tests.support.clusters import NEW, NS, OLD, Scripted, image_of, kube_overrides, scripted_standin, serving_standin
from tests.support.invariant import assert_invariant, snapshot
from tests.support.prefect_runs import task_runs
from tests.support.stacks import Stack
from tests.support.workloads import Workloads, model_version_served, standin_containers


@pytest.fixture
def standin(stack: Stack, workloads: Workloads, model_bundle_dir: Path) -> Iterator[KubeStandIn]:
    """The previous version in production (S3) and serving (deployments/webservice.yaml, 2 real replicas);
    the current model stored as a candidate."""
    with serving_standin(stack.s3, stack.settings, workloads, model_bundle_dir) as server:
        yield server


@pytest.fixture
def overrides(standin: KubeStandIn, tmp_path: Path, stack: Stack) -> dict[str, Any]:
    """Settings pointing the flow at the stand-in and the test's buckets."""
    return kube_overrides(standin, tmp_path, stack.overrides)


def _served(overrides: dict[str, Any]) -> str:
    return model_version_served(connect_kubeconfig(overrides["kubeconfig"]), NS)


def test_a_good_image_runs_on_every_replica_is_verified_and_becomes_production(
    standin: KubeStandIn, overrides: dict[str, Any], workloads: Workloads, docker_client: Any, stack: Stack
) -> None:
    before = {c.id for c in standin_containers(docker_client, standin)}
    objects = snapshot(stack.s3, stack.settings.model_bucket)
    state = deploy(workloads.current, workloads.current_version, overrides=overrides, return_state=True)
    assert state.type is StateType.COMPLETED, state.message
    assert state.result().startswith("rolled out")
    assert "golden cases match" in state.result()
    assert_invariant(
        stack.s3, stack.settings, standin, version=workloads.current_version, image=workloads.current, before=objects
    )
    record = releases.read_record(stack.s3, stack.settings.model_bucket, workloads.current_version)
    assert record is not None and record.verification.passed and record.rollout.outcome == "rolled out"
    old = releases.read_record(stack.s3, stack.settings.model_bucket, workloads.previous_version)
    assert old is not None and (old.production, old.superseded_by) == (False, workloads.current_version)
    assert image_of(standin) == workloads.current
    running = standin_containers(docker_client, standin)
    image_id = docker_client.images.get(workloads.current).id
    assert len(running) == 2 and all(c.image.id == image_id for c in running)
    for old in before:
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(old)
    assert _served(overrides) == workloads.current_version
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert {"set_image", "wait_for_rollout", "verify_release", "promote_model"} <= set(task_runs(run_id))
    assert "rollback" not in task_runs(run_id)


@pytest.fixture
def scripted(stack: Stack, tmp_path: Path, model_bundle_dir: Path, model_metadata: ModelMetadata) -> Iterator[Scripted]:
    """Refusals that need no real container: one Deployment on OLD, the session model a candidate."""
    candidate = (model_metadata.model_version, model_bundle_dir)
    with scripted_standin(stack.s3, stack.settings, stack.overrides, tmp_path, candidate) as scripted:
        yield scripted


def test_no_matching_deployment_fails_without_retrying(scripted: Scripted) -> None:
    overrides = {**scripted.overrides, "team": "nobody"}
    state = deploy(NEW, scripted.version, overrides=overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ClusterError, match="No Deployment in namespace 'oncology' matches"):
        state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert task_runs(run_id)["set_image"].run_count == 1


def test_an_image_not_pinned_by_digest_is_refused(scripted: Scripted) -> None:
    state = deploy(
        "registry.local/oncology-webservice:latest", scripted.version, overrides=scripted.overrides, return_state=True
    )
    assert state.type is StateType.FAILED
    with pytest.raises(ConfigurationError, match="not pinned by digest"):
        state.result()
    assert image_of(scripted.standin) == OLD


def test_a_version_that_is_no_stored_candidate_is_refused_before_any_change(scripted: Scripted) -> None:
    state = deploy(NEW, "20261125T000000Z-0000dead", overrides=scripted.overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ConfigurationError, match="holds no model"):
        state.result()
    assert scripted.standin.requests_made("PATCH") == []
