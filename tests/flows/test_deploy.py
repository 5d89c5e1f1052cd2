"""The `deploy` flow under a real Prefect server, through the official kubernetes client, against the
Kubernetes stand-in whose pods are Docker containers of the images pushed to the local registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from kubernetes.client import CoreV1Api
from prefect.client.schemas.objects import StateType

from flows.deploy import deploy
from oncology_pipeline.cluster import WEBSERVICE_CONTAINER, connect_kubeconfig
from oncology_pipeline.errors import ClusterError, ConfigurationError, RolloutFailed
from standins.kube import DockerRuntime, KubeStandIn, ScriptedRuntime
from tests.support.prefect_runs import task_runs
from tests.support.workloads import NODE_CREDENTIALS, Workloads, model_version_served, serve_image, standin_containers

NS = "oncology"
SELECTOR = "app=oncology-webservice,team=ml-platform"


@pytest.fixture
def standin(workloads: Workloads) -> Iterator[KubeStandIn]:
    """deployments/webservice.yaml (2 replicas) serving the previous model version in real containers."""
    runtime = DockerRuntime(credentials=lambda registry: NODE_CREDENTIALS)
    with KubeStandIn("flow-test-token", runtime=runtime, step_interval=0.1, backoff=1.0) as server:
        serve_image(server, NS, workloads.previous)
        yield server


def _overrides(standin: KubeStandIn, tmp_path: Path) -> dict[str, Any]:
    return {
        "kubeconfig": str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")),
        "kube_context": "kube-standin",
        "kube_namespace": NS,
        "rollout_poll_seconds": 0.2,
        "rollout_timeout_seconds": 90,
        "work_dir": str(tmp_path / "work"),
    }


@pytest.fixture
def overrides(standin: KubeStandIn, tmp_path: Path) -> dict[str, Any]:
    """Settings pointing the flow at the stand-in."""
    return _overrides(standin, tmp_path)


def _image(standin: KubeStandIn) -> str:
    containers = standin.deployment(NS, "oncology-webservice")["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] == WEBSERVICE_CONTAINER))


def _served(overrides: dict[str, Any]) -> str:
    return model_version_served(connect_kubeconfig(overrides["kubeconfig"]), NS)


def test_a_good_image_runs_on_every_replica_and_the_old_containers_are_gone(
    standin: KubeStandIn, overrides: dict[str, Any], workloads: Workloads, docker_client: Any
) -> None:
    before = {c.id for c in standin_containers(docker_client, standin)}
    state = deploy(workloads.current, overrides=overrides, return_state=True)
    assert state.type is StateType.COMPLETED, state.message
    assert state.result().startswith("rolled out")
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
    assert set(task_runs(run_id)) == {"connect_cluster", "set_image", "wait_for_rollout"}


@pytest.mark.parametrize(
    ("workload", "reason"),
    [("missing", r"ErrImagePull|ImagePullBackOff"), ("crashing", "CrashLoopBackOff")],
    ids=["digest-missing-from-the-registry", "container-that-cannot-load-its-model"],
)
def test_a_rollout_that_never_gets_ready_is_rolled_back_and_the_old_pods_keep_serving(
    standin: KubeStandIn,
    overrides: dict[str, Any],
    workloads: Workloads,
    docker_client: Any,
    workload: str,
    reason: str,
) -> None:
    serving = {c.id for c in standin_containers(docker_client, standin)}
    image = getattr(workloads, workload)
    state = deploy(image, overrides=overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(RolloutFailed, match=reason) as info:
        state.result()
    message = str(info.value)
    assert "exceeded its progress deadline" in message and "Rolled back" in message
    assert _image(standin) == workloads.previous
    assert standin.wait_until(lambda: standin.controller.complete(NS, "oncology-webservice"), 30)
    assert {c.id for c in standin_containers(docker_client, standin)} == serving  # the same containers serve
    assert _served(overrides) == workloads.previous_version
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert runs["wait_for_rollout"].state_type is StateType.FAILED
    assert runs["rollback"].state_type is StateType.COMPLETED
    pods: Any = CoreV1Api(connect_kubeconfig(overrides["kubeconfig"])).list_namespaced_pod(NS, label_selector=SELECTOR)
    assert all(p.status.container_statuses[0].image == workloads.previous for p in pods.items)


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A stand-in with scripted containers, for refusals that happen before any pod starts."""
    labels = {"app": "oncology-webservice", "team": "ml-platform"}
    old = "registry.local/oncology-webservice@sha256:" + "a" * 64
    with KubeStandIn("flow-test-token", runtime=ScriptedRuntime(), step_interval=0.02) as server:
        server.add_deployment(NS, "other-team", {**labels, "team": "other"}, {WEBSERVICE_CONTAINER: old})
        yield _overrides(server, tmp_path)


def test_no_matching_deployment_fails_without_retrying(scripted: dict[str, Any]) -> None:
    state = deploy("registry.local/oncology-webservice@sha256:" + "b" * 64, overrides=scripted, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ClusterError, match="No Deployment in namespace 'oncology' matches"):
        state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert task_runs(run_id)["set_image"].run_count == 1


def test_an_image_not_pinned_by_digest_is_refused(scripted: dict[str, Any]) -> None:
    state = deploy("registry.local/oncology-webservice:latest", overrides=scripted, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ConfigurationError, match="not pinned by digest"):
        state.result()


def test_a_hanging_rollout_times_out_and_is_rolled_back(tmp_path: Path) -> None:
    labels = {"app": "oncology-webservice", "team": "ml-platform"}
    old = "registry.local/oncology-webservice@sha256:" + "a" * 64
    new = "registry.local/oncology-webservice@sha256:" + "b" * 64
    runtime = ScriptedRuntime(unpullable={new})  # never ready; the spec's 600 s deadline is far away
    with KubeStandIn("flow-test-token", runtime=runtime, step_interval=0.02) as server:
        server.add_deployment(NS, "oncology-webservice", labels, {WEBSERVICE_CONTAINER: old})
        overrides = {**_overrides(server, tmp_path), "rollout_timeout_seconds": 1.5, "rollout_poll_seconds": 0.05}
        state = deploy(new, overrides=overrides, return_state=True)
        assert state.type is StateType.FAILED
        with pytest.raises(RolloutFailed, match=r"did not finish within 1\.5 s.*ErrImagePull|ImagePullBackOff"):
            state.result()
        assert _image(server) == old
