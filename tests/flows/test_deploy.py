"""The `deploy` flow under a real Prefect server, through the official kubernetes client, against the
Kubernetes stand-in whose pods are Docker containers of the images pushed to the local registry.

Production is the previous model version, served by its image; after every outcome the invariant holds: the
pointer, the cluster's image and annotations, and the release records agree, and nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from kubernetes.client import CoreV1Api
from prefect.client.schemas.objects import StateType

import flows.deploy
from flows.deploy import deploy
from oncology_model.bundle import ModelMetadata
from oncology_pipeline import modelstore, releases, s3store
from oncology_pipeline.cluster import WEBSERVICE_CONTAINER
from oncology_pipeline.errors import ClusterError, ConfigurationError, RolloutFailed
from oncology_pipeline.kubeapi import connect_kubeconfig
from oncology_pipeline.releases import ANNOTATION_RELEASE, ANNOTATION_VERSION
from standins.kube import DockerRuntime, KubeStandIn, ScriptedRuntime
from tests.flows.conftest import Stack
from tests.support.invariant import assert_invariant, production_annotations, seed_production, snapshot
from tests.support.prefect_runs import task_runs
from tests.support.workloads import NODE_CREDENTIALS, Workloads, model_version_served, serve_image, standin_containers

NS = "oncology"
SELECTOR = "app=oncology-webservice,team=ml-platform"
LABELS = {"app": "oncology-webservice", "team": "ml-platform"}
OLD = "registry.local/oncology-webservice@sha256:" + "a" * 64
NEW = "registry.local/oncology-webservice@sha256:" + "b" * 64


@pytest.fixture
def standin(stack: Stack, workloads: Workloads, model_bundle_dir: Path) -> Iterator[KubeStandIn]:
    """The previous version in production (S3) and serving (deployments/webservice.yaml, 2 real replicas);
    the current model stored as a candidate."""
    previous = seed_production(stack.s3, stack.settings, workloads.previous_bundle, workloads.previous)
    prefix = f"{stack.settings.model_prefix}/{workloads.current_version}"
    s3store.upload_directory(stack.s3, stack.settings.model_bucket, prefix, model_bundle_dir)
    runtime = DockerRuntime(credentials=lambda registry: NODE_CREDENTIALS)
    with KubeStandIn("flow-test-token", runtime=runtime, step_interval=0.1, backoff=1.0) as server:
        serve_image(server, NS, workloads.previous, annotations=production_annotations(stack.settings, previous))
        yield server


def _overrides(standin: KubeStandIn, tmp_path: Path, stack: Stack | None = None) -> dict[str, Any]:
    return {
        **(stack.overrides if stack else {}),
        "kubeconfig": str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")),
        "kube_context": "kube-standin",
        "kube_namespace": NS,
        "rollout_poll_seconds": 0.2,
        "rollout_timeout_seconds": 90,
        "work_dir": str(tmp_path / "work"),
    }


@pytest.fixture
def overrides(standin: KubeStandIn, tmp_path: Path, stack: Stack) -> dict[str, Any]:
    """Settings pointing the flow at the stand-in and the test's buckets."""
    return _overrides(standin, tmp_path, stack)


def _image(standin: KubeStandIn) -> str:
    containers = standin.deployment(NS, "oncology-webservice")["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] == WEBSERVICE_CONTAINER))


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
    assert record is not None and record.verification["passed"] and record.rollout["outcome"] == "rolled out"
    old = releases.read_record(stack.s3, stack.settings.model_bucket, workloads.previous_version)
    assert old is not None and (old.production, old.superseded_by) == (False, workloads.current_version)
    assert _image(standin) == workloads.current
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


@pytest.mark.parametrize(
    ("workload", "served_version", "reason"),
    [
        ("missing", "current_version", r"exceeded its progress deadline.*(ErrImagePull|ImagePullBackOff)"),
        ("crashing", "current_version", r"exceeded its progress deadline.*CrashLoopBackOff"),
        ("current", "previous_version", "serves model .*, expected"),  # the image serves another model
    ],
    ids=["digest-missing-from-the-registry", "container-that-cannot-load-its-model", "verification-mismatch"],
)
def test_a_release_that_does_not_serve_is_rolled_back_and_production_stays(
    standin: KubeStandIn,
    overrides: dict[str, Any],
    workloads: Workloads,
    docker_client: Any,
    stack: Stack,
    workload: str,
    served_version: str,
    reason: str,
) -> None:
    serving = {c.id for c in standin_containers(docker_client, standin)}
    objects = snapshot(stack.s3, stack.settings.model_bucket)
    image, version = getattr(workloads, workload), getattr(workloads, served_version)
    state = deploy(image, version, overrides=overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(RolloutFailed, match=reason) as info:
        state.result()
    assert "Rolled back" in str(info.value)
    assert standin.wait_until(lambda: standin.controller.complete(NS, "oncology-webservice"), 30)
    assert_invariant(
        stack.s3, stack.settings, standin, version=workloads.previous_version, image=workloads.previous, before=objects
    )
    if workload != "current":  # the old pods were never replaced
        assert {c.id for c in standin_containers(docker_client, standin)} == serving
    assert _served(overrides) == workloads.previous_version
    record = releases.read_record(stack.s3, stack.settings.model_bucket, version)
    assert record is not None and record.rollout["outcome"] == "rolled back"
    assert record.production is (version == workloads.previous_version)  # a failed deploy never changes it
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert runs["verify_release" if workload == "current" else "wait_for_rollout"].state_type is StateType.FAILED
    assert runs["rollback"].state_type is StateType.COMPLETED
    assert "promote_model" not in runs
    pods: Any = CoreV1Api(connect_kubeconfig(overrides["kubeconfig"])).list_namespaced_pod(NS, label_selector=SELECTOR)
    assert all(p.status.container_statuses[0].image == workloads.previous for p in pods.items)


@dataclass(frozen=True)
class Scripted:
    """A stand-in with scripted containers, settings for it, and a stored candidate version."""

    standin: KubeStandIn
    overrides: dict[str, Any]
    version: str


@pytest.fixture
def scripted(stack: Stack, tmp_path: Path, model_bundle_dir: Path, model_metadata: ModelMetadata) -> Iterator[Scripted]:
    """Refusals and timeouts that need no real container: one Deployment on OLD, the session model a candidate."""
    version = model_metadata.model_version
    s3store.upload_directory(
        stack.s3, stack.settings.model_bucket, f"{stack.settings.model_prefix}/{version}", model_bundle_dir
    )
    runtime = ScriptedRuntime(unpullable={NEW})  # NEW never gets ready; the spec's 600 s deadline is far away
    with KubeStandIn("flow-test-token", runtime=runtime, step_interval=0.02) as server:
        server.add_deployment(NS, "oncology-webservice", LABELS, {WEBSERVICE_CONTAINER: OLD})
        yield Scripted(server, _overrides(server, tmp_path, stack), version)


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
    assert _image(scripted.standin) == OLD


def test_a_version_that_is_no_stored_candidate_is_refused_before_any_change(scripted: Scripted) -> None:
    state = deploy(NEW, "20261125T000000Z-0000dead", overrides=scripted.overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ConfigurationError, match="holds no model"):
        state.result()
    assert scripted.standin.requests_made("PATCH") == []


def test_a_hanging_rollout_times_out_and_is_rolled_back_with_its_annotations(scripted: Scripted, stack: Stack) -> None:
    overrides = {**scripted.overrides, "rollout_timeout_seconds": 1.5, "rollout_poll_seconds": 0.05}
    state = deploy(NEW, scripted.version, overrides=overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(RolloutFailed, match=r"did not finish within 1\.5 s.*(ErrImagePull|ImagePullBackOff)"):
        state.result()
    assert _image(scripted.standin) == OLD
    annotations = scripted.standin.deployment(NS, "oncology-webservice")["metadata"].get("annotations") or {}
    assert ANNOTATION_VERSION not in annotations and ANNOTATION_RELEASE not in annotations
    assert modelstore.read_pointer(stack.s3, stack.settings.model_bucket, stack.settings.model_prefix) is None


def test_an_interruption_during_the_rollout_puts_the_previous_image_back(
    scripted: Scripted, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation (what a lost strict concurrency lease becomes) arrives while the rollout is watched."""

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise asyncio.CancelledError

    monkeypatch.setattr(flows.deploy, "wait_for_rollout", interrupted)
    with pytest.raises(asyncio.CancelledError):  # the run ends Crashed, and the cancellation goes on up
        deploy(NEW, scripted.version, overrides=scripted.overrides)
    assert _image(scripted.standin) == OLD
    patches = scripted.standin.requests_made("PATCH")
    assert len(patches) == 2  # the new image, then the previous one back
    annotations = scripted.standin.deployment(NS, "oncology-webservice")["metadata"].get("annotations") or {}
    assert ANNOTATION_VERSION not in annotations
    assert modelstore.read_pointer(stack.s3, stack.settings.model_bucket, stack.settings.model_prefix) is None
