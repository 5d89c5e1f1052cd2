"""Graceful pod termination in the Kubernetes stand-in (scripted containers): deletionTimestamp, out of the endpoints
at once, preStop, SIGTERM, SIGKILL after the grace period, `gracePeriodSeconds` overrides, and none of it slowing a
rollout or the stand-in's stop. The scripted runtime keeps what each container got, in order (`ContainerEvent`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api, V1DeleteOptions
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.runtime import ContainerEvent

NS = "default"
POLITE = "registry.local/polite@sha256:" + "3" * 64  # exits at SIGTERM
STUBBORN = "registry.local/stubborn@sha256:" + "4" * 64  # ignores SIGTERM


@pytest.fixture
def runtime() -> ScriptedRuntime:
    return ScriptedRuntime(published=True, stop_seconds={STUBBORN: math.inf})


@pytest.fixture
def standin(runtime: ScriptedRuntime) -> Iterator[KubeStandIn]:
    with KubeStandIn("termination-token", runtime=runtime, step_interval=0.02) as server:
        server.kubelet.tick = 0.02
        server.kubelet.minimum_grace = 0  # the grace periods here are 1 s, below the kubelet's 2 s minimum
        yield server


@pytest.fixture
def core(standin: KubeStandIn, tmp_path: Path) -> CoreV1Api:
    return CoreV1Api(connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml"))))


def deploy(
    standin: KubeStandIn,
    name: str,
    image: str,
    *,
    replicas: int = 1,
    grace: int = 30,
    pre_stop: dict[str, Any] | None = None,
    strategy: str = "RollingUpdate",
) -> None:
    """A Deployment of one container (port 8000) and a Service `name` in front of it; waits for the rollout."""
    container: dict[str, Any] = {"name": name, "image": image, "ports": [{"name": "http", "containerPort": 8000}]}
    if pre_stop is not None:
        container["lifecycle"] = {"preStop": pre_stop}
    labels = {"app": name}
    standin.add_manifest(
        {
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        namespace=NS,
    )
    standin.add_manifest(
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "strategy": {"type": strategy},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"terminationGracePeriodSeconds": grace, "containers": [container]},
                },
            },
        },
        namespace=NS,
        timeout=10,
    )


def pods(core: CoreV1Api, name: str) -> list[Any]:
    found: list[Any] = core.list_namespaced_pod(NS, label_selector=f"app={name}").items
    return found


def container_id(pod: Any) -> str:
    return str(pod.status.container_statuses[0].container_id).removeprefix("docker://")


def events(runtime: ScriptedRuntime, cid: str) -> list[ContainerEvent]:
    return [event for event in list(runtime.events) if event.container_id == cid]


def exists(core: CoreV1Api, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, NS)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def endpoints(standin: KubeStandIn, name: str, tries: int = 6) -> set[str]:
    """The hosts the Service proxy chooses over `tries` requests (scripted addresses are named after containers)."""
    return {standin.proxy.endpoint(NS, name, "http")[0] for _ in range(tries)}


def host_of(runtime: ScriptedRuntime, cid: str) -> str:
    address = runtime.address(cid, 8000)
    assert address is not None
    return address[0]


def test_pre_stop_then_sigterm_then_sigkill_when_the_grace_period_ends(
    standin: KubeStandIn, runtime: ScriptedRuntime, core: CoreV1Api
) -> None:
    deploy(standin, "stubborn", STUBBORN, grace=1, pre_stop={"exec": {"command": ["/bin/flush", "--now"]}})
    (pod,) = pods(core, "stubborn")
    cid = container_id(pod)
    core.delete_namespaced_pod(pod.metadata.name, NS)
    deadline = time.monotonic() + 10
    while exists(core, pod.metadata.name) and time.monotonic() < deadline:
        time.sleep(0.01)
    left_api = time.monotonic()
    seen = events(runtime, cid)
    assert [e.what for e in seen] == ["exec", "SIGTERM", "SIGKILL", "exited", "removed"]
    hook, term, kill, exited, _ = seen
    assert hook.detail == "/bin/flush --now"
    assert term.detail == "1"  # the grace period left after the hook, before SIGKILL
    assert term.at - hook.at < 0.5
    assert kill.at - hook.at >= 0.95  # the grace period counts from the start of preStop
    assert exited.detail == "137"
    assert left_api >= exited.at  # the pod object stays until its container has exited


def test_a_container_that_exits_at_sigterm_is_not_killed_and_its_pod_goes_at_once(
    standin: KubeStandIn, runtime: ScriptedRuntime, core: CoreV1Api
) -> None:
    deploy(standin, "polite", POLITE, grace=30)
    (pod,) = pods(core, "polite")
    cid = container_id(pod)
    start = time.monotonic()
    core.delete_namespaced_pod(pod.metadata.name, NS)
    assert standin.wait_for_terminations(timeout=5)
    assert not exists(core, pod.metadata.name)
    assert time.monotonic() - start < 2  # not the whole grace period
    seen = events(runtime, cid)
    assert [e.what for e in seen] == ["SIGTERM", "exited", "removed"]
    assert (seen[0].detail, seen[1].detail) == ("30", "0")


def test_a_terminating_pod_shows_its_deletion_and_leaves_the_endpoints_at_once(
    standin: KubeStandIn, runtime: ScriptedRuntime, core: CoreV1Api
) -> None:
    deploy(standin, "web", POLITE, replicas=2, grace=30, pre_stop={"sleep": {"seconds": 30}})
    leaving, staying = pods(core, "web")
    assert endpoints(standin, "web") == {host_of(runtime, container_id(p)) for p in (leaving, staying)}
    answer: Any = core.delete_namespaced_pod(leaving.metadata.name, NS)
    chosen = endpoints(standin, "web", tries=8)  # at once, no tick waited for (a replacement may be there already)
    assert host_of(runtime, container_id(leaving)) not in chosen
    assert host_of(runtime, container_id(staying)) in chosen
    assert answer.metadata.deletion_timestamp is not None
    terminating: Any = core.read_namespaced_pod(leaving.metadata.name, NS)
    until = (terminating.metadata.deletion_timestamp - datetime.now(UTC)).total_seconds()
    assert 28 <= until <= 31 and terminating.metadata.deletion_grace_period_seconds == 30
    assert {c.type: c.status for c in terminating.status.conditions}["Ready"] == "False"
    assert standin.wait_until(lambda: standin.controller.complete(NS, "web"), 5)  # a replacement, not waiting
    assert len(pods(core, "web")) == 3 and standin.deployment(NS, "web")["status"]["replicas"] == 2
    assert host_of(runtime, container_id(leaving)) not in endpoints(standin, "web")
    assert "SIGTERM" not in [e.what for e in events(runtime, container_id(leaving))]  # still in its preStop sleep


def test_grace_period_zero_kills_at_once_even_a_terminating_pod(
    standin: KubeStandIn, runtime: ScriptedRuntime, core: CoreV1Api
) -> None:
    deploy(standin, "web", STUBBORN, replicas=2, grace=30, pre_stop={"sleep": {"seconds": 30}})
    fresh, terminating = pods(core, "web")
    core.delete_namespaced_pod(terminating.metadata.name, NS)  # graceful first: 30 s
    assert standin.wait_until(lambda: standin.kubelet.terminating() == 1, 2)  # in its preStop sleep
    standin.kubelet.tick = 0.5  # the kubelet notices late: the API must not wait for it
    for pod in (fresh, terminating):
        core.delete_namespaced_pod(pod.metadata.name, NS, grace_period_seconds=0)
        assert not exists(core, pod.metadata.name)  # gone from the API with the answer
    for pod in (fresh, terminating):
        cid = container_id(pod)
        assert standin.wait_until(lambda cid=cid: "removed" in [e.what for e in events(runtime, cid)], 2)  # type: ignore[misc]
    assert [e.what for e in events(runtime, container_id(fresh))] == ["SIGKILL", "exited", "removed"]
    assert "SIGTERM" not in [e.what for e in events(runtime, container_id(terminating))]


@pytest.mark.parametrize("where", ["query", "body"])
def test_the_delete_options_grace_period_overrides_the_pods_and_may_only_shorten_it(
    standin: KubeStandIn, core: CoreV1Api, where: str
) -> None:
    deploy(standin, "web", POLITE, grace=30, pre_stop={"sleep": {"seconds": 30}})
    (pod,) = pods(core, "web")

    def delete(seconds: int) -> Any:
        if where == "query":
            return core.delete_namespaced_pod(pod.metadata.name, NS, grace_period_seconds=seconds)
        return core.delete_namespaced_pod(pod.metadata.name, NS, body=V1DeleteOptions(grace_period_seconds=seconds))

    first = delete(7)
    assert first.metadata.deletion_grace_period_seconds == 7
    assert 5 <= (first.metadata.deletion_timestamp - datetime.now(UTC)).total_seconds() <= 8
    assert delete(60).metadata.deletion_grace_period_seconds == 7  # a longer one is ignored
    assert delete(3).metadata.deletion_grace_period_seconds == 3


def test_a_rolling_update_does_not_wait_for_old_pods_to_terminate(standin: KubeStandIn, core: CoreV1Api) -> None:
    deploy(standin, "web", POLITE, replicas=2, grace=30, pre_stop={"sleep": {"seconds": 30}})
    old = {p.metadata.name for p in pods(core, "web")}
    apps = AppsV1Api(core.api_client)
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": STUBBORN}]}}}}
    apps.patch_namespaced_deployment("web", NS, body)
    assert standin.wait_until(lambda: standin.controller.complete(NS, "web"), 5)
    listed = pods(core, "web")
    assert {p.metadata.name for p in listed if p.metadata.deletion_timestamp} == old  # still terminating
    status = standin.deployment(NS, "web")["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (2, 2, 2)
    old_rs = standin.replicasets(NS, "web")[0]
    assert old_rs["status"]["replicas"] == 0


def test_recreate_starts_new_pods_only_once_the_old_ones_are_gone(standin: KubeStandIn, core: CoreV1Api) -> None:
    deploy(standin, "web", POLITE, grace=30, pre_stop={"sleep": {"seconds": 30}}, strategy="Recreate")
    (old,) = pods(core, "web")
    apps = AppsV1Api(core.api_client)
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": STUBBORN}]}}}}
    apps.patch_namespaced_deployment("web", NS, body)
    assert standin.wait_until(lambda: bool(pods(core, "web")[0].metadata.deletion_timestamp), 2)
    time.sleep(0.3)
    assert [p.metadata.name for p in pods(core, "web")] == [old.metadata.name]
    core.delete_namespaced_pod(old.metadata.name, NS, grace_period_seconds=0)
    assert standin.wait_until(lambda: standin.controller.complete(NS, "web"), 5)


def test_stopping_the_stand_in_kills_terminating_pods_without_waiting(runtime: ScriptedRuntime) -> None:
    standin = KubeStandIn("termination-token", runtime=runtime, step_interval=0.02).start()
    try:
        deploy(standin, "web", STUBBORN, grace=30, pre_stop={"sleep": {"seconds": 30}})
        (pod,) = standin.pods(NS, "app=web")
        cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("docker://")
        with standin.backend.lock:
            standin.backend.delete_pod(NS, pod["metadata"]["name"], None, dry_run=False)
        assert standin.kubelet.terminating() == 1
        assert not standin.wait_for_terminations(timeout=0.3)  # in its 30 s preStop sleep
    finally:
        start = time.monotonic()
        standin.stop()
    assert time.monotonic() - start < 3
    assert standin.kubelet.terminating() == 0
    assert runtime.events_of(cid) == ["SIGKILL", "exited", "removed"]


def test_a_container_that_has_already_exited_gets_no_hook_nor_signal(
    standin: KubeStandIn, runtime: ScriptedRuntime, core: CoreV1Api
) -> None:
    deploy(standin, "web", STUBBORN, grace=30, pre_stop={"sleep": {"seconds": 30}})
    (pod,) = pods(core, "web")
    cid = container_id(pod)
    standin.kubelet.tick = 0.5  # the kubelet looks again only after the deletion
    time.sleep(0.1)
    runtime.crashing.add(STUBBORN)  # its container has exited, unnoticed so far
    start = time.monotonic()
    core.delete_namespaced_pod(pod.metadata.name, NS)
    assert standin.wait_until(lambda: not exists(core, pod.metadata.name), 2)
    assert time.monotonic() - start < 1.5  # no 30 s preStop sleep for a dead container
    assert [e.what for e in events(runtime, cid)] == ["removed"]
