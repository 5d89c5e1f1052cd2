"""The `deploy` flow under a real Prefect server, through the official kubernetes client, against the
Kubernetes API stand-in (reached through a kubeconfig file, as real users connect)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType

from flows.deploy import deploy
from oncology_pipeline.cluster import WEBSERVICE_CONTAINER
from oncology_pipeline.errors import ClusterError, ConfigurationError, RolloutFailed
from tests.support.kube_standin import KubeStandIn
from tests.support.prefect_runs import task_runs

NS = "oncology"
LABELS = {"app": "oncology-webservice", "team": "ml-platform"}
OLD = "registry.local/oncology-webservice@sha256:" + "a" * 64
NEW = "registry.local/oncology-webservice@sha256:" + "b" * 64


@pytest.fixture
def standin() -> Iterator[KubeStandIn]:
    """Two matching Deployments and one of another team, all on OLD; a short progress deadline."""
    with KubeStandIn("flow-test-token", step_interval=0.02, progress_deadline=0.5) as server:
        server.add_deployment(NS, "oncology-webservice", LABELS, {WEBSERVICE_CONTAINER: OLD}, replicas=2)
        server.add_deployment(
            NS, "oncology-webservice-canary", {**LABELS, "track": "canary"}, {WEBSERVICE_CONTAINER: OLD}
        )
        server.add_deployment(NS, "other-team", {**LABELS, "team": "other"}, {WEBSERVICE_CONTAINER: OLD})
        yield server


@pytest.fixture
def overrides(standin: KubeStandIn, tmp_path: Path) -> dict[str, Any]:
    """Settings pointing the flow at the stand-in."""
    kubeconfig = standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    return {
        "kubeconfig": str(kubeconfig),
        "kube_context": "kube-standin",
        "kube_namespace": NS,
        "rollout_poll_seconds": 0.05,
        "rollout_timeout_seconds": 10,
        "work_dir": str(tmp_path / "work"),
    }


def _image(standin: KubeStandIn, name: str) -> str:
    containers = standin.deployment(NS, name)["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] == WEBSERVICE_CONTAINER))


def test_deploy_patches_every_matching_deployment_and_waits(standin: KubeStandIn, overrides: dict[str, Any]) -> None:
    state = deploy(NEW, overrides=overrides, return_state=True)
    assert state.type is StateType.COMPLETED
    assert state.result().startswith("rolled out")
    assert _image(standin, "oncology-webservice") == NEW
    assert _image(standin, "oncology-webservice-canary") == NEW
    assert _image(standin, "other-team") == OLD
    status = standin.deployment(NS, "oncology-webservice")["status"]
    assert status["updatedReplicas"] == status["availableReplicas"] == 2
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert {n: runs[n].state_type for n in ("connect_cluster", "set_image", "wait_for_rollout")} == {
        "connect_cluster": StateType.COMPLETED,
        "set_image": StateType.COMPLETED,
        "wait_for_rollout": StateType.COMPLETED,
    }
    assert "rollback" not in runs
    with get_client(sync_client=True) as client:  # the rollout ran under the global limit, one at a time
        assert client.read_global_concurrency_limit_by_name("deploy").limit == 1


def test_a_failed_rollout_is_rolled_back_and_the_flow_fails_with_the_reason(
    standin: KubeStandIn, overrides: dict[str, Any]
) -> None:
    standin.break_image(NEW, "fail")
    state = deploy(NEW, overrides=overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(RolloutFailed) as failure:
        state.result()
    assert "exceeded its progress deadline" in str(failure.value) and "Rolled back" in str(failure.value)
    assert _image(standin, "oncology-webservice") == OLD
    assert _image(standin, "oncology-webservice-canary") == OLD
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert runs["wait_for_rollout"].state_type is StateType.FAILED
    assert runs["rollback"].state_type is StateType.COMPLETED


def test_a_hanging_rollout_times_out_and_is_rolled_back(standin: KubeStandIn, overrides: dict[str, Any]) -> None:
    standin.break_image(NEW, "hang")
    state = deploy(NEW, overrides={**overrides, "rollout_timeout_seconds": 1.5}, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(RolloutFailed, match=r"did not finish within 1\.5 s"):
        state.result()
    assert _image(standin, "oncology-webservice") == OLD


def test_no_matching_deployment_fails_at_once_naming_selector_and_namespace(
    standin: KubeStandIn, overrides: dict[str, Any]
) -> None:
    state = deploy(NEW, overrides={**overrides, "team": "nobody"}, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ClusterError) as failure:
        state.result()
    assert "app=oncology-webservice,team=nobody" in str(failure.value) and repr(NS) in str(failure.value)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert task_runs(run_id)["set_image"].run_count == 1


def test_an_image_not_pinned_by_digest_is_refused(standin: KubeStandIn, overrides: dict[str, Any]) -> None:
    state = deploy("registry.local/oncology-webservice:latest", overrides=overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ConfigurationError, match="not pinned by digest"):
        state.result()
    assert _image(standin, "oncology-webservice") == OLD
