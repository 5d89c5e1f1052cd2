"""Events, and the verbs whose effect kubectl shows through them: `scale`, `delete pod`, `rollout restart`.

Through the official client, with scripted containers; one stand-in serves every test, each on its own Deployment.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.events import EventLog
from standins.kube.kubelet import go_duration

NS = "happenings"
IMAGE = "registry.local/web:1"
CRASHING = "registry.local/crash:1"
UNPULLABLE = "registry.local/absent:1"


@pytest.fixture(scope="module")
def standin() -> Iterator[KubeStandIn]:
    runtime = ScriptedRuntime(crashing={CRASHING}, unpullable={UNPULLABLE})
    with KubeStandIn("events-token", runtime=runtime, step_interval=0.02, backoff=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def client(standin: KubeStandIn, tmp_path_factory: pytest.TempPathFactory) -> ApiClient:
    return connect_kubeconfig(str(standin.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig.yaml")))


def events_of(core: CoreV1Api, obj: dict[str, Any]) -> list[Any]:
    """The events of one object, selected as `kubectl describe` selects them."""
    meta = obj["metadata"]
    selector = ",".join(f"involvedObject.{key}={meta[key]}" for key in ("namespace", "uid", "name"))  # as kubectl
    return list(core.list_namespaced_event(meta["namespace"], field_selector=selector, limit=500).items)


def reasons(core: CoreV1Api, obj: dict[str, Any]) -> list[str]:
    return [event.reason for event in events_of(core, obj)]


def test_a_rollout_records_the_controllers_and_the_kubelets_events(standin: KubeStandIn, client: ApiClient) -> None:
    core = CoreV1Api(client)
    deployment = standin.add_deployment(NS, "first", {"app": "first"}, {"web": IMAGE})
    (rs,) = standin.replicasets(NS, "first")
    (pod,) = standin.pods(NS, "app=first")
    (scaled,) = events_of(core, deployment)
    assert (scaled.type, scaled.reason, scaled.source.component) == (
        "Normal",
        "ScalingReplicaSet",
        "deployment-controller",
    )
    assert scaled.message == f"Scaled up replica set {rs['metadata']['name']} from 0 to 1"
    involved = scaled.involved_object
    assert (involved.kind, involved.api_version, involved.name, involved.namespace) == (
        "Deployment",
        "apps/v1",
        "first",
        NS,
    )
    assert (scaled.count, scaled.first_timestamp) == (1, scaled.last_timestamp)
    (created,) = events_of(core, rs)
    assert (created.reason, created.message, created.source.component) == (
        "SuccessfulCreate",
        f"Created pod: {pod['metadata']['name']}",
        "replicaset-controller",
    )
    assert standin.wait_until(lambda: "Started" in reasons(core, pod))
    happened = events_of(core, pod)
    assert [e.reason for e in happened] == ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
    assert [e.source.component for e in happened] == ["default-scheduler", *["kubelet"] * 4]
    assert happened[-1].involved_object.field_path == "spec.containers{web}"
    assert happened[-1].message == "Started container web"


def test_a_crash_loop_counts_its_back_offs_in_one_event(standin: KubeStandIn, client: ApiClient) -> None:
    core = CoreV1Api(client)
    standin.add_deployment(NS, "crashing", {"app": "crashing"}, {"crash": CRASHING}, settle=False)
    assert standin.wait_until(lambda: bool(standin.pods(NS, "app=crashing")))
    (pod,) = standin.pods(NS, "app=crashing")

    def back_off() -> Any:
        return next((e for e in events_of(core, pod) if e.reason == "BackOff"), None)

    assert standin.wait_until(lambda: back_off() is not None and back_off().count >= 3)
    event = back_off()
    assert event.type == "Warning" and event.message.startswith("Back-off restarting failed container crash in pod")
    assert event.last_timestamp >= event.first_timestamp
    assert sum(e.reason == "BackOff" for e in events_of(core, pod)) == 1


def test_an_image_that_cannot_be_pulled_is_a_warning(standin: KubeStandIn, client: ApiClient) -> None:
    core = CoreV1Api(client)
    standin.add_deployment(NS, "unpullable", {"app": "unpullable"}, {"absent": UNPULLABLE}, settle=False)
    assert standin.wait_until(lambda: bool(standin.pods(NS, "app=unpullable")))
    (pod,) = standin.pods(NS, "app=unpullable")
    assert standin.wait_until(lambda: "BackOff" in reasons(core, pod))
    messages = {(e.type, e.reason, e.message) for e in events_of(core, pod)}
    assert ("Warning", "Failed", "Error: ErrImagePull") in messages
    assert ("Warning", "Failed", "Error: ImagePullBackOff") in messages
    assert ("Normal", "BackOff", f'Back-off pulling image "{UNPULLABLE}"') in messages
    assert any(
        kind == "Warning" and message.startswith(f'Failed to pull image "{UNPULLABLE}"')
        for kind, _, message in messages
    )


def test_events_are_listed_in_every_namespace_and_filtered_by_fields(standin: KubeStandIn, client: ApiClient) -> None:
    core = CoreV1Api(client)
    standin.add_deployment("elsewhere", "other", {"app": "other"}, {"web": IMAGE})
    # its own warnings in NS: the module's other tests may run on another worker
    standin.add_deployment(NS, "listed", {"app": "listed"}, {"web": UNPULLABLE}, settle=False)
    assert standin.wait_until(lambda: bool(core.list_namespaced_event(NS, field_selector="type=Warning").items), 30)
    everywhere = core.list_event_for_all_namespaces().items
    assert {"elsewhere", NS} <= {e.metadata.namespace for e in everywhere}
    warnings = core.list_namespaced_event(NS, field_selector="type=Warning").items
    assert warnings and all(e.type == "Warning" for e in warnings)
    not_pods = core.list_namespaced_event("elsewhere", field_selector="involvedObject.kind!=Pod").items
    assert {e.involved_object.kind for e in not_pods} == {"Deployment", "ReplicaSet"}
    with pytest.raises(ApiException) as info:
        core.list_namespaced_event(NS, field_selector="spec.nodeName=kube-standin")
    assert info.value.status == 400
    assert json.loads(info.value.body or "{}")["message"] == 'field label not supported: "spec.nodeName"'
    one: Any = everywhere[0]
    assert core.read_namespaced_event(one.metadata.name, one.metadata.namespace).reason == one.reason


def test_the_log_keeps_the_newest_events_and_counts_repeats() -> None:
    changes: list[tuple[str, str, str]] = []

    def changed(kind: str, event: dict[str, Any]) -> None:
        event["metadata"]["resourceVersion"] = str(len(changes) + 1)
        changes.append((kind, event["reason"], event["metadata"]["resourceVersion"]))

    log = EventLog(threading.RLock(), changed, limit=2)
    pod = {"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u", "apiVersion": "v1"}
    first = log.record(pod, "Normal", "Pulling", "Pulling image", "kubelet")
    log.record(pod, "Normal", "Pulled", "Pulled image", "kubelet")
    again = log.record(pod, "Normal", "Pulling", "Pulling image", "kubelet")
    assert (again["metadata"]["name"], again["count"]) == (first["metadata"]["name"], 2)
    assert int(again["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert again["source"] == {"component": "kubelet", "host": "kube-standin"}
    log.record(pod, "Warning", "Failed", "Error: ErrImagePull", "kubelet")
    assert [e["reason"] for e in log.select("ns")] == ["Pulling", "Failed"]  # "Pulled", the oldest, is dropped
    assert log.select("other") == []
    log.clear()
    assert log.select("ns") == []
    assert [(kind, reason) for kind, reason, _ in changes] == [
        ("ADDED", "Pulling"),
        ("ADDED", "Pulled"),
        ("MODIFIED", "Pulling"),
        ("ADDED", "Failed"),
        ("DELETED", "Pulled"),
        ("DELETED", "Pulling"),
        ("DELETED", "Failed"),
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0004, "0s"), (0.0125, "12ms"), (2.5, "2.5s"), (3.0, "3s"), (63.25, "1m3.25s"), (3723.5, "1h2m3.5s")],
)
def test_pull_times_are_written_as_go_writes_durations(seconds: float, shown: str) -> None:
    assert go_duration(seconds) == shown


# --- kubectl's verbs ----------------------------------------------------------------------------------


def test_scale_reads_and_changes_the_replicas_through_the_subresource(standin: KubeStandIn, client: ApiClient) -> None:
    apps, core = AppsV1Api(client), CoreV1Api(client)
    deployment = standin.add_deployment(NS, "scaled", {"app": "scaled", "team": "t"}, {"web": IMAGE})
    scale: Any = apps.read_namespaced_deployment_scale("scaled", NS)
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (1, 1, "app=scaled,team=t")
    merge = "application/merge-patch+json"  # what kubectl scale --replicas=3 sends
    patched: Any = apps.patch_namespaced_deployment_scale("scaled", NS, {"spec": {"replicas": 3}}, _content_type=merge)
    assert patched.spec.replicas == 3
    assert standin.wait_until(lambda: len(standin.pods(NS, "app=scaled")) == 3)
    assert standin.deployment(NS, "scaled")["metadata"]["generation"] == 2
    replaced: list[Any] = []

    def scale_down_from_3_to_1() -> bool:
        """What `kubectl scale --current-replicas=3 --replicas=1` does: read the Scale, check the precondition, replace
        it naming the version read. The controller still writes the Deployment's status while the new pods become
        ready, each write a new resourceVersion, so the replace may get 409 Conflict: kubectl reads again and retries
        (kubectl/pkg/scale: ScaleCondition retries update conflicts only)."""
        current: Any = apps.read_namespaced_deployment_scale("scaled", NS)
        assert current.spec.replicas == 3
        current.spec.replicas = 1
        try:
            replaced.append(apps.replace_namespaced_deployment_scale("scaled", NS, current))
        except ApiException as refused:
            if refused.status != 409:
                raise
            return False
        return True

    assert standin.wait_until(scale_down_from_3_to_1)
    assert replaced[-1].spec.replicas == 1
    assert standin.wait_until(lambda: len(standin.pods(NS, "app=scaled")) == 1)
    assert standin.wait_until(lambda: "SuccessfulDelete" in reasons(core, standin.replicasets(NS, "scaled")[0]))
    messages = [e.message for e in events_of(core, deployment)]
    rs = standin.replicasets(NS, "scaled")[0]["metadata"]["name"]
    assert messages[-2:] == [f"Scaled up replica set {rs} from 1 to 3", f"Scaled down replica set {rs} from 3 to 1"]


def test_scale_refuses_a_stale_version_and_a_negative_count(standin: KubeStandIn, client: ApiClient) -> None:
    apps = AppsV1Api(client)
    standin.add_deployment(NS, "guarded", {"app": "guarded"}, {"web": IMAGE})
    stale: Any = apps.read_namespaced_deployment_scale("guarded", NS)
    apps.patch_namespaced_deployment_scale("guarded", NS, {"spec": {"replicas": 2}})
    stale.spec.replicas = 5
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment_scale("guarded", NS, stale)
    assert conflict.value.status == 409
    with pytest.raises(ApiException) as negative:
        apps.patch_namespaced_deployment_scale("guarded", NS, {"spec": {"replicas": -1}})
    assert negative.value.status == 422
    assert "spec.replicas" in json.loads(negative.value.body or "{}")["message"]
    assert standin.deployment(NS, "guarded")["spec"]["replicas"] == 2


def test_a_deleted_pod_is_answered_and_replaced_by_its_replica_set(standin: KubeStandIn, client: ApiClient) -> None:
    core = CoreV1Api(client)
    standin.add_deployment(NS, "replaced", {"app": "replaced"}, {"web": IMAGE})
    (pod,) = standin.pods(NS, "app=replaced")
    name = pod["metadata"]["name"]
    deleted: Any = core.delete_namespaced_pod(
        name, NS, propagation_policy="Background"
    )  # what kubectl delete pod sends
    assert (deleted.kind, deleted.metadata.name, deleted.metadata.deletion_timestamp is not None) == ("Pod", name, True)

    def names() -> list[str]:
        return [p["metadata"]["name"] for p in standin.pods(NS, "app=replaced")]

    assert standin.wait_until(lambda: len(names()) == 1 and names() != [name])
    (rs,) = standin.replicasets(NS, "replaced")
    assert reasons(core, rs) == ["SuccessfulCreate", "SuccessfulCreate"]
    assert standin.wait_until(lambda: "Killing" in reasons(core, pod))


def test_rollout_restart_rolls_out_a_new_replica_set(standin: KubeStandIn, client: ApiClient) -> None:
    apps = AppsV1Api(client)
    standin.add_deployment(NS, "restarted", {"app": "restarted"}, {"web": IMAGE}, 2)
    before = {p["metadata"]["name"] for p in standin.pods(NS, "app=restarted")}
    annotation = {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
    apps.patch_namespaced_deployment("restarted", NS, {"spec": {"template": {"metadata": {"annotations": annotation}}}})
    assert standin.wait_until(lambda: len(standin.replicasets(NS, "restarted")) == 2)
    assert standin.wait_until(lambda: standin.controller.complete(NS, "restarted"), 10)
    assert standin.wait_until(lambda: len(standin.pods(NS, "app=restarted")) == 2)  # the old ones have terminated
    after = standin.pods(NS, "app=restarted")
    assert not before & {p["metadata"]["name"] for p in after}
    newest = standin.replicasets(NS, "restarted")[-1]["metadata"]["labels"]["pod-template-hash"]
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in after} == {newest}
