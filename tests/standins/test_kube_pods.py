"""The stand-in's pods are Docker containers of the pod template's image, configured, probed and stopped as the spec
says.

Every call goes through the official kubernetes client; what Docker runs is checked with Docker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from kubernetes.client import ApiClient, CoreV1Api

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import DockerRuntime, KubeStandIn
from standins.kube.dockerruntime import OWNER_LABEL
from tests.support import docker_env
from tests.support.workloads import (
    NODE_CREDENTIALS,
    Workloads,
    fast_probes,
    model_version_served,
    serve_image,
    standin_containers,
)

NS = "oncology"
SELECTOR = "app=oncology-webservice,team=ml-platform"


def _standin() -> KubeStandIn:
    runtime = DockerRuntime(credentials=lambda registry: NODE_CREDENTIALS)
    return KubeStandIn("pods-token", runtime=runtime, step_interval=0.1, backoff=1.0)


def _client(standin: KubeStandIn, tmp_path: Path) -> ApiClient:
    return connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")))


@pytest.fixture(scope="module")
def serving_pods(
    workloads: Workloads, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[KubeStandIn, ApiClient]]:
    """One stand-in serving the current image from deployments/webservice.yaml (2 replicas)."""
    with _standin() as standin:
        serve_image(standin, NS, workloads.current)
        yield standin, _client(standin, tmp_path_factory.mktemp("kube"))


def test_pods_run_the_pushed_image_as_the_pod_spec_says(
    serving_pods: tuple[KubeStandIn, ApiClient], workloads: Workloads, docker_client: Any
) -> None:
    standin, api = serving_pods
    pods: list[Any] = CoreV1Api(api).list_namespaced_pod(NS, label_selector=SELECTOR).items
    assert len(pods) == 2
    digest = workloads.current.split("@")[1]
    image_id = docker_client.images.get(workloads.current).id
    containers = {c.id: c for c in standin_containers(docker_client, standin)}
    assert len(containers) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
        (status,) = pod.status.container_statuses
        assert status.ready and status.image == workloads.current and status.image_id.endswith(digest)
        container = containers[status.container_id.removeprefix("docker://")]
        assert container.image.id == image_id
        networks = container.attrs["NetworkSettings"]["Networks"].values()
        assert pod.status.pod_ip in {network["IPAddress"] for network in networks}  # the container's own address
        host = container.attrs["HostConfig"]
        assert container.attrs["Config"]["User"] == "10001:10001"
        assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
        assert (host["Memory"], host["NanoCpus"], host["CapDrop"]) == (512 * 2**20, 10**9, ["ALL"])
        assert host["SecurityOpt"] == ["no-new-privileges"]


def test_the_service_proxy_reaches_a_ready_pod(
    serving_pods: tuple[KubeStandIn, ApiClient], workloads: Workloads
) -> None:
    _, api = serving_pods
    assert model_version_served(api, NS) == workloads.current_version
    answer: Any = CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
        "oncology-webservice:http", NS, "readyz", _preload_content=False
    )
    assert answer.status == 200


def test_a_port_forward_answers_like_the_service(
    serving_pods: tuple[KubeStandIn, ApiClient], workloads: Workloads
) -> None:
    import json
    import urllib.request

    standin, _ = serving_pods
    url = standin.port_forward(NS, "oncology-webservice", "http")
    request = urllib.request.Request(f"{url}/v1/model", headers={"X-Request-ID": "through-the-forward"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["model_version"] == workloads.current_version
        assert answer.headers["x-request-id"] == "through-the-forward"  # end-to-end headers pass both ways


def test_a_failing_liveness_probe_restarts_the_container(
    workloads: Workloads, tmp_path: Path, docker_client: Any
) -> None:
    def broken_liveness(document: dict[str, Any]) -> None:
        fast_probes(document)
        if document.get("kind") == "Deployment":
            document["spec"]["replicas"] = 1
            document["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/no-such-path"

    with _standin() as standin:
        serve_image(standin, NS, workloads.current, broken_liveness)
        core = CoreV1Api(_client(standin, tmp_path))

        def status() -> Any:
            pod: Any = core.list_namespaced_pod(NS, label_selector=SELECTOR).items[0]
            return pod.status.container_statuses[0]

        first = status()  # one read: the restart count and the container it belongs to
        assert standin.wait_until(lambda: status().restart_count > first.restart_count, 60)
        terminated = status().last_state.terminated
        assert terminated is not None and terminated.exit_code == 137
        pod: Any = core.list_namespaced_pod(NS, label_selector=SELECTOR).items[0]
        pod_name = pod.metadata.name
        previous = core.read_namespaced_pod_log(pod_name, NS, previous=True)  # kubectl logs --previous
        assert "Application startup complete" in previous  # what the killed container wrote, kept past its removal
        killed = first.container_id.removeprefix("docker://")
        with pytest.raises(docker.errors.NotFound):  # removed before the restart was counted
            docker_client.containers.get(killed)


def test_stopping_removes_every_container_and_starting_removes_leftovers(
    workloads: Workloads, docker_client: Any
) -> None:
    leftover = docker_client.containers.create(
        docker_env.BASE_IMAGE, ["sleep", "60"], labels={OWNER_LABEL: "999999999:killed"}
    )
    runtime = DockerRuntime(credentials=lambda registry: NODE_CREDENTIALS)
    with KubeStandIn("pods-token", runtime=runtime, step_interval=0.1) as standin:
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(leftover.id)  # a stand-in whose process is gone left it
        standin.add_deployment(NS, "tiny", {"app": "tiny"}, {"tiny": workloads.current}, replicas=2)
        running = standin_containers(docker_client, standin)
        assert len(running) == 2
    assert docker_client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={runtime.owner}"}) == []


#: Exits 0 at SIGTERM only if SIGUSR1 (its preStop hook) came first, 3 otherwise.
POLITE = """
import signal, sys, time
hooked = []
signal.signal(signal.SIGUSR1, lambda *_: hooked.append(1))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0 if hooked else 3))
while True:
    time.sleep(0.1)
"""
#: Ignores SIGTERM: only SIGKILL ends it (137).
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.1)
"""


def test_a_deleted_pod_runs_pre_stop_then_gets_sigterm_and_sigkill_after_the_grace_period(
    docker_client: Any, tmp_path: Path
) -> None:
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "kill -USR1 1"]}}}
    containers = [
        {"name": "polite", "image": docker_env.BASE_IMAGE, "command": ["python3", "-c", POLITE], "lifecycle": hook},
        {"name": "stubborn", "image": docker_env.BASE_IMAGE, "command": ["python3", "-c", STUBBORN]},
    ]
    labels = {"app": "graceful"}
    manifest = {
        "metadata": {"name": "graceful", "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": containers},
            },
        },
    }
    with _standin() as standin:
        standin.add_manifest(manifest, namespace=NS, timeout=60)
        core = CoreV1Api(_client(standin, tmp_path))
        pods: Any = core.list_namespaced_pod(NS, label_selector="app=graceful")
        (pod,) = pods.items
        with standin.backend.lock:
            record = standin.backend.pods[(NS, pod.metadata.name)]
        started = time.monotonic()
        core.delete_namespaced_pod(pod.metadata.name, NS)
        assert standin.wait_until(lambda: record.gone, 30)
        took = time.monotonic() - started
        codes = {c.name: (c.state.get("terminated") or {}).get("exitCode") for c in record.containers}
        assert codes == {"polite": 0, "stubborn": 137}  # preStop before SIGTERM; SIGKILL for the one ignoring it
        assert 2 <= took < 10  # the grace period, and not much more
        for status in pod.status.container_statuses:
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(status.container_id.removeprefix("docker://"))
