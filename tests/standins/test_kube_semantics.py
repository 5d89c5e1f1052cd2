"""The API semantics clients rely on: optimistic concurrency, 422 with field causes, server-side field validation,
generation and observedGeneration, strategic-merge directives, PUT; and every object the stand-in answers is valid
against the strict schema of the Kubernetes minor it claims (scripted containers)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, PolicyV1Api
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.proxy import Reply
from standins.kube.schema import KUBERNETES_MINOR, errors, field_path

TOKEN = "semantics-token"
NS = "semantics"
IMAGE = "registry.local/web@sha256:" + "1" * 64
CRASHING = "registry.local/crash:1"
UNPULLABLE = "registry.local/absent:1"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
CHECKED_KINDS = {
    "Deployment",
    "ReplicaSet",
    "Pod",
    "Service",
    "Secret",
    "Event",
    "ConfigMap",
    "ServiceAccount",
    "PodDisruptionBudget",
}
_answered: list[dict[str, Any]] = []  # every JSON object the stand-in answered in this module
pytestmark = pytest.mark.xdist_group("kube-semantics")  # one stand-in for the module (`make test`: --dist loadgroup)


@pytest.fixture(scope="module")
def standin() -> Iterator[KubeStandIn]:
    """A stand-in whose every JSON answer is kept in `_answered` (for the schema test at the end)."""
    runtime = ScriptedRuntime(crashing={CRASHING}, unpullable={UNPULLABLE})
    with KubeStandIn(TOKEN, runtime=runtime, step_interval=0.02, backoff=0.05, progress_deadline=5) as server:
        handle = server.api.handle

        def keeping(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            reply = handle(method, path, headers, body)
            if reply.chunks is None and reply.content_type == "application/json":
                _answered.append(json.loads(reply.body))
            return reply

        server.api.handle = keeping  # type: ignore[method-assign,assignment]
        yield server


@pytest.fixture(scope="module")
def client(standin: KubeStandIn, tmp_path_factory: pytest.TempPathFactory) -> ApiClient:
    return connect_kubeconfig(str(standin.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig.yaml")))


def manifest(name: str, image: str = IMAGE, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}},
            **spec,
        },
    }


def request(
    standin: KubeStandIn, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, dict[str, Any], list[str]]:
    """A request without the client: status, JSON body and `Warning` headers as sent."""
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(standin.url + path, data=data, method=method)
    sent.add_header("Authorization", f"Bearer {TOKEN}")
    sent.add_header("Content-Type", content_type)
    context: ssl.SSLContext = standin.client_context()
    try:
        with urllib.request.urlopen(sent, timeout=5, context=context) as answer:
            return answer.status, json.loads(answer.read()), answer.headers.get_all("Warning") or []
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers.get_all("Warning") or []


DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


# --- optimistic concurrency -------------------------------------------------------------------------------


def test_a_stale_resource_version_is_a_409_conflict_for_put_and_patch(standin: KubeStandIn, client: ApiClient) -> None:
    apps: Any = AppsV1Api(client)
    standin.add_manifest(manifest("cas"), namespace=NS)
    read = apps.read_namespaced_deployment("cas", NS)
    apps.patch_namespaced_deployment("cas", NS, {"metadata": {"labels": {"seen": "once"}}})  # someone else's change
    read.spec.replicas = 2
    with pytest.raises(ApiException) as raised:
        apps.replace_namespaced_deployment("cas", NS, read)
    status = json.loads(str(raised.value.body))
    assert (raised.value.status, status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        'Operation cannot be fulfilled on deployments.apps "cas": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert status["details"] == {"name": "cas", "group": "apps", "kind": "deployments"}
    stale = {"metadata": {"resourceVersion": read.metadata.resource_version}, "spec": {"replicas": 3}}
    code, body, _ = request(standin, "PATCH", f"{DEPLOYMENTS}/cas", stale, MERGE)
    assert (code, body["reason"]) == (409, "Conflict")
    assert standin.deployment(NS, "cas")["spec"]["replicas"] == 1  # neither write landed
    fresh = apps.read_namespaced_deployment("cas", NS)
    fresh.spec.replicas = 2
    replaced = apps.replace_namespaced_deployment("cas", NS, fresh)  # PUT with the current version
    assert (replaced.spec.replicas, replaced.metadata.uid) == (2, read.metadata.uid)
    assert replaced.metadata.generation == read.metadata.generation + 1


def test_a_secret_with_a_stale_version_is_refused_too(standin: KubeStandIn, client: ApiClient) -> None:
    core: Any = CoreV1Api(client)
    standin.add_manifest({"kind": "Secret", "metadata": {"name": "token"}, "stringData": {"k": "1"}}, namespace=NS)
    old = core.read_namespaced_secret("token", NS)
    core.patch_namespaced_secret("token", NS, {"stringData": {"k": "2"}})
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_secret("token", NS, old)
    assert raised.value.status == 409
    assert 'on secrets "token": the object has been modified' in json.loads(str(raised.value.body))["message"]


# --- validation -------------------------------------------------------------------------------------------


def test_an_invalid_deployment_is_422_with_a_cause_per_field(standin: KubeStandIn) -> None:
    bad = manifest("bad", replicas=-1)
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    del bad["spec"]["template"]["spec"]["containers"][0]["image"]
    code, status, _ = request(standin, "POST", DEPLOYMENTS, bad)
    assert (code, status["reason"]) == (422, "Invalid")
    causes = {cause["field"]: cause for cause in status["details"]["causes"]}
    assert causes["spec.replicas"] == {
        "reason": "FieldValueInvalid",
        "message": "Invalid value: -1: must be greater than or equal to 0",
        "field": "spec.replicas",
    }
    assert causes["spec.template.spec.containers[0].image"]["reason"] == "FieldValueRequired"
    assert causes["spec.template.metadata.labels"]["message"].endswith("`selector` does not match template `labels`")
    assert (status["details"]["name"], status["details"]["group"], status["details"]["kind"]) == (
        "bad",
        "apps",
        "Deployment",
    )
    assert status["message"].startswith('Deployment.apps "bad" is invalid: [')
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in status["message"]
    assert request(standin, "GET", f"{DEPLOYMENTS}/bad")[0] == 404


def test_a_patch_that_makes_the_object_invalid_is_422_and_changes_nothing(standin: KubeStandIn) -> None:
    standin.add_manifest(manifest("steady"), namespace=NS)
    before = standin.deployment(NS, "steady")
    selector = {"spec": {"selector": {"matchLabels": {"app": "moved"}}}}
    code, status, _ = request(standin, "PATCH", f"{DEPLOYMENTS}/steady", selector, MERGE)
    assert code == 422
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.template.metadata.labels", "spec.selector"]
    assert status["details"]["causes"][1]["message"].endswith("field is immutable")
    surge = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}}
    code, status, _ = request(standin, "PATCH", f"{DEPLOYMENTS}/steady", surge, SMP)
    assert status["message"] == (
        'Deployment.apps "steady" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": '
        "may not be 0 when `maxSurge` is 0"
    )
    assert standin.deployment(NS, "steady") == before


@pytest.mark.parametrize(
    ("validation", "code", "warnings"),
    [
        ("Strict", 400, []),
        ("Warn", 201, ['299 - "unknown field \\"spec.bogus\\""']),
        ("Ignore", 201, []),
        (None, 201, ['299 - "unknown field \\"spec.bogus\\""']),  # the API server's default: Warn
    ],
)
def test_unknown_fields_follow_field_validation(
    standin: KubeStandIn, validation: str | None, code: int, warnings: list[str]
) -> None:
    name = f"fields-{(validation or 'default').lower()}"
    query = f"?fieldValidation={validation}" if validation else ""
    sent, body, warned = request(standin, "POST", DEPLOYMENTS + query, manifest(name, bogus=1))
    assert (sent, warned) == (code, warnings)
    if code == 400:
        assert body["message"] == (
            'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
            'unknown field "spec.bogus"'
        )
    else:
        assert "bogus" not in body["spec"] and "bogus" not in standin.deployment(NS, name)["spec"]


def test_a_value_of_the_wrong_type_cannot_be_decoded(standin: KubeStandIn) -> None:
    code, body, _ = request(standin, "POST", DEPLOYMENTS, manifest("typed", replicas="two"))
    assert (code, body["reason"]) == (400, "BadRequest")
    assert "cannot unmarshal string into Go struct field spec.replicas of type int32" in body["message"]


# --- generation -------------------------------------------------------------------------------------------


def test_generation_moves_with_the_spec_only_and_observed_generation_follows(
    standin: KubeStandIn, client: ApiClient
) -> None:
    apps: Any = AppsV1Api(client)
    created = standin.add_manifest(manifest("gen"), namespace=NS)
    assert (created["metadata"]["generation"], created["status"]["observedGeneration"]) == (1, 1)
    labelled = apps.patch_namespaced_deployment("gen", NS, {"metadata": {"annotations": {"note": "metadata only"}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("gen", NS, {"spec": {"replicas": 2}})
    assert scaled.metadata.generation == 2
    assert standin.wait_until(lambda: standin.deployment(NS, "gen")["status"].get("observedGeneration") == 2)
    same = apps.patch_namespaced_deployment("gen", NS, {"spec": {"replicas": 2}})
    assert same.metadata.resource_version == standin.deployment(NS, "gen")["metadata"]["resourceVersion"]
    assert same.metadata.generation == 2  # a no-op write changes nothing


# --- strategic merge --------------------------------------------------------------------------------------


def test_strategic_merge_directives_kubectl_sends(standin: KubeStandIn) -> None:
    three = manifest("smp")
    three["spec"]["template"]["spec"]["containers"] = [{"name": n, "image": f"{n}:1"} for n in ("a", "b", "c")]
    standin.add_manifest(three, namespace=NS, settle=False)
    path = f"{DEPLOYMENTS}/smp"
    reorder = {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
        "containers": [{"name": "c", "image": "c:2"}],
    }
    code, body, _ = request(standin, "PATCH", path, {"spec": {"template": {"spec": reorder}}}, SMP)
    containers = body["spec"]["template"]["spec"]["containers"]
    assert (code, [(c["name"], c["image"]) for c in containers]) == (200, [("c", "c:2"), ("a", "a:1"), ("b", "b:1")])
    delete = {"containers": [{"name": "a", "$patch": "delete"}]}
    code, body, _ = request(standin, "PATCH", path, {"spec": {"template": {"spec": delete}}}, SMP)
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["c", "b"]
    recreate = {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}  # what kubectl apply sends to switch
    code, body, _ = request(standin, "PATCH", path, {"spec": recreate}, SMP)
    assert (code, body["spec"]["strategy"]) == (200, {"type": "Recreate"})
    replace = {"metadata": {"labels": {"$patch": "replace", "app": "smp", "only": "this"}}}
    code, body, _ = request(standin, "PATCH", path, replace, SMP)
    assert body["metadata"]["labels"] == {"app": "smp", "only": "this"}


# --- pods and events --------------------------------------------------------------------------------------


def test_pods_have_an_ip_and_an_image_on_the_node_is_not_pulled_again(standin: KubeStandIn, client: ApiClient) -> None:
    image = "registry.local/twice:1"
    apps: Any = AppsV1Api(client)
    standin.add_manifest(manifest("twice", image), namespace=NS)
    (first,) = [pod["metadata"]["name"] for pod in standin.pods(NS, "app=twice")]
    apps.patch_namespaced_deployment("twice", NS, {"spec": {"replicas": 2}})
    assert standin.wait_until(lambda: standin.controller.complete(NS, "twice"))
    pods = standin.pods(NS, "app=twice")
    assert all(pod["status"]["podIP"].startswith("10.244.0.") for pod in pods)
    assert all(pod["status"]["hostIP"] == "127.0.0.1" for pod in pods)
    assert len({pod["status"]["podIP"] for pod in pods}) == 2
    (second,) = [pod["metadata"]["name"] for pod in pods if pod["metadata"]["name"] != first]
    core: Any = CoreV1Api(client)

    def messages(pod: str) -> list[str]:
        found = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={pod}").items
        return [event.message for event in sorted(found, key=lambda e: int(e.metadata.resource_version))]

    pulled = messages(first)
    assert pulled[1] == f'Pulling image "{image}"'
    assert pulled[2].startswith(f'Successfully pulled image "{image}" in ')
    assert messages(second)[1] == f'Container image "{image}" already present on machine'  # no Pulling


def test_events_can_be_watched_and_a_reset_forgets_them(tmp_path: Path) -> None:
    runtime = ScriptedRuntime()
    with KubeStandIn(TOKEN, runtime=runtime, step_interval=0.02) as standin:
        core: Any = CoreV1Api(connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml"))))
        version = core.list_namespaced_event(NS).metadata.resource_version
        standin.add_manifest(manifest("watched"), namespace=NS, settle=False)
        seen: list[tuple[str, str]] = []
        for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_event, NS, resource_version=version, timeout_seconds=5, _request_timeout=10
        ):
            seen.append((event["type"], event["object"].reason))
            if event["object"].reason == "Started":
                break
        assert seen[0] == ("ADDED", "SuccessfulCreate")  # the first event of a rollout, from its version on
        assert ("ADDED", "Scheduled") in seen
        listed = core.list_namespaced_event(NS)
        before, names = listed.metadata.resource_version, {event.metadata.name for event in listed.items}
        standin.reset()
        left = {event.metadata.name for event in core.list_namespaced_event(NS).items}
        assert names and not names & left  # (the kubelet then records its Killing of the pods)
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            core.list_namespaced_event, NS, resource_version=before, timeout_seconds=2, _request_timeout=10
        )
        assert next(iter(stream))["type"] == "DELETED"


# --- every answer valid -----------------------------------------------------------------------------------


def test_every_object_the_stand_in_answered_is_valid_against_the_strict_schema(
    standin: KubeStandIn, client: ApiClient
) -> None:
    """A scenario of its own (crash loop, image pull back-off, Service, Secret, ConfigMap, ServiceAccount,
    PodDisruptionBudget, scale, pod deletion), then every answer of the module's stand-in: the other tests' too when
    they ran before it in the same process."""
    core: Any = CoreV1Api(client)
    apps: Any = AppsV1Api(client)
    policy: Any = PolicyV1Api(client)
    standin.add_manifest(manifest("answered"), namespace=NS)
    standin.add_deployment(NS, "crashing", {"app": "crashing"}, {"crash": CRASHING}, settle=False)
    standin.add_deployment(NS, "absent", {"app": "absent"}, {"absent": UNPULLABLE}, settle=False)
    service = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "answered"}, "ports": [{"port": 80}]}}
    core.create_namespaced_service(NS, service)
    core.create_namespaced_secret(NS, {"metadata": {"name": "answered"}, "stringData": {"k": "v"}})
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "answered"}, "data": {"k": "v"}, "binaryData": {"b": ""}}
    )
    core.create_namespaced_service_account(
        NS, {"metadata": {"name": "answered"}, "automountServiceAccountToken": False}
    )
    budget = {"metadata": {"name": "answered"}, "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {}}}}
    policy.create_namespaced_pod_disruption_budget(NS, budget)
    core.patch_namespaced_service("web", NS, {"metadata": {"labels": {"tier": "front"}}})
    apps.patch_namespaced_deployment_scale("answered", NS, {"spec": {"replicas": 3}})
    victim = standin.pods(NS, "app=answered")[0]["metadata"]["name"]
    core.delete_namespaced_pod(victim, NS)
    assert standin.wait_until(
        lambda: any(p["status"]["containerStatuses"][0]["restartCount"] > 1 for p in standin.pods(NS, "app=crashing"))
    )
    assert standin.wait_until(
        lambda: any(
            (p["status"]["containerStatuses"][0]["state"].get("waiting") or {}).get("reason") == "ImagePullBackOff"
            for p in standin.pods(NS, "app=absent")
        )
    )
    for path in ("/apis/apps/v1/deployments", "/apis/apps/v1/replicasets", "/api/v1/pods", "/api/v1/services"):
        request(standin, "GET", path)
    assert standin.wait_until(  # an empty selector: every pod of the namespace
        lambda: policy.read_namespaced_pod_disruption_budget("answered", NS).status.expected_pods > 0
    )
    for path in ("/api/v1/secrets", "/api/v1/events", "/api/v1/configmaps", "/api/v1/serviceaccounts"):
        request(standin, "GET", path)
    request(standin, "GET", "/apis/policy/v1/poddisruptionbudgets")
    for pod in standin.pods(NS):
        request(standin, "GET", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}")
    objects = []
    for answer in _answered:
        kind, version = answer.get("kind", ""), answer.get("apiVersion", "")
        if kind.removesuffix("List") in CHECKED_KINDS and kind.endswith("List"):
            objects += [{"apiVersion": version, "kind": kind.removesuffix("List"), **item} for item in answer["items"]]
        elif kind in CHECKED_KINDS:
            objects.append(answer)
    assert {obj["kind"] for obj in objects} == CHECKED_KINDS
    assert len(objects) > 50
    problems = {
        f"{obj['kind']} {field_path(error.absolute_path)}: {error.message}" for obj in objects for error in errors(obj)
    }
    assert problems == set(), f"not valid Kubernetes {KUBERNETES_MINOR}"
