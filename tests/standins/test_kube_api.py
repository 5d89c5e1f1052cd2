"""The Kubernetes API stand-in keeps the protocol promises the deploy tests rely on (scripted containers).

Through the official client where it can express the request, so that what is checked is what the
client sends and parses.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.patches import json_patch, merge_patch, strategic_merge
from standins.kube.responses import SERVER_VERSION
from standins.kube.selectors import parse_label_selector

TOKEN = "standin-test-token"
NS = "default"
IMAGE = "registry.local/web@sha256:" + "1" * 64
PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime() -> ScriptedRuntime:
    return ScriptedRuntime()


@pytest.fixture
def standin(runtime: ScriptedRuntime) -> Iterator[KubeStandIn]:
    with KubeStandIn(TOKEN, runtime=runtime, step_interval=0.02, progress_deadline=0.3) as server:
        server.add_deployment(
            NS, "web", {"app": "web", "tier": "front"}, {"web": IMAGE, "sidecar": "proxy:1"}, 2, settle=False
        )
        server.add_deployment(NS, "api", {"app": "api", "tier": "back"}, {"api": IMAGE}, settle=False)
        server.add_deployment(NS, "legacy", {"app": "web", "legacy": "yes"}, {"web": IMAGE}, settle=False)
        # They roll out side by side: one wait instead of three in a row.
        assert server.wait_until(lambda: all(server.controller.complete(NS, n) for n in ("web", "api", "legacy")))
        yield server


@pytest.fixture
def apps(standin: KubeStandIn, tmp_path: Path) -> AppsV1Api:
    return AppsV1Api(connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml"))))


def raw(standin: KubeStandIn, path: str, *, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    """A GET without the client, to see status codes and bodies as sent."""
    request = urllib.request.Request(standin.url + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=standin.client_context()) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def containers(standin: KubeStandIn, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = standin.deployment(NS, name)["spec"]["template"]["spec"]["containers"]
    return found


# --- reading ------------------------------------------------------------------------------------------


def test_a_list_is_a_deployment_list_filtered_by_labels(standin: KubeStandIn) -> None:
    code, body = raw(standin, "/apis/apps/v1/namespaces/default/deployments?labelSelector=app%3Dweb,tier%3Dfront")
    assert code == 200
    assert (body["apiVersion"], body["kind"]) == ("apps/v1", "DeploymentList")
    assert int(body["metadata"]["resourceVersion"]) > 0
    assert [item["metadata"]["name"] for item in body["items"]] == ["web"]
    assert "kind" not in body["items"][0]  # list items carry no type, as from a real API server


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("app=web", ["legacy", "web"]),
        ("app==web,legacy!=yes", ["web"]),
        ("tier in (front,back)", ["api", "web"]),
        ("app notin (api),!legacy", ["web"]),
        ("legacy", ["legacy"]),
        ("", ["api", "legacy", "web"]),
    ],
)
def test_label_selectors(apps: AppsV1Api, selector: str, names: list[str]) -> None:
    listed = apps.list_namespaced_deployment(NS, label_selector=selector or None)
    assert sorted(d.metadata.name for d in listed.items if d.metadata and d.metadata.name) == names


def test_an_unknown_deployment_is_a_404_status(apps: AppsV1Api, standin: KubeStandIn) -> None:
    with pytest.raises(ApiException) as info:
        apps.read_namespaced_deployment("absent", NS)
    assert info.value.status == 404
    body = json.loads(info.value.body or "{}")
    assert (body["kind"], body["reason"], body["message"]) == (
        "Status",
        "NotFound",
        'deployments.apps "absent" not found',
    )
    assert raw(standin, "/apis/batch/v1/namespaces/default/jobs")[0] == 404


def test_requests_without_the_token_are_401_but_version_is_public(standin: KubeStandIn) -> None:
    code, body = raw(standin, "/apis/apps/v1/namespaces/default/deployments", token=None)
    assert (code, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")
    assert raw(standin, "/apis/apps/v1/namespaces/default/deployments", token="wrong")[0] == 401
    assert raw(standin, "/version", token=None) == (200, SERVER_VERSION)


def test_replicasets_carry_the_revision_history(apps: AppsV1Api) -> None:
    listed = apps.list_namespaced_replica_set(NS)
    web = [rs for rs in listed.items if rs.metadata and rs.metadata.name and rs.metadata.name.startswith("web-")]
    assert len(web) == 1
    assert web[0].metadata is not None and web[0].metadata.annotations is not None
    assert web[0].metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert web[0].status is not None and web[0].status.available_replicas == 2


# --- HTTPS ----------------------------------------------------------------------------------------------


def test_the_kubeconfig_names_the_https_url_and_carries_the_ca(standin: KubeStandIn, tmp_path: Path) -> None:
    config = yaml.safe_load(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml").read_text())
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == standin.url and standin.url.startswith("https://127.0.0.1:")
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == standin.ca_pem
    assert config["users"][0]["user"] == {"token": TOKEN}


def test_a_client_that_does_not_trust_the_ca_is_refused(standin: KubeStandIn) -> None:
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(standin.url + "/version", timeout=5, context=ssl.create_default_context())


def test_plain_http_is_answered_as_an_https_server_answers_it(standin: KubeStandIn) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(standin.url.replace("https://", "http://") + "/version", timeout=5)
    assert raised.value.code == 400
    assert raised.value.read() == b"Client sent an HTTP request to an HTTPS server.\n"


def test_the_ca_is_kept_in_its_directory_and_shared_in_the_process_without_one(tmp_path: Path) -> None:
    def ca(ca_dir: Path | None = None) -> bytes:
        with KubeStandIn(TOKEN, runtime=ScriptedRuntime(), ca_dir=ca_dir) as server:
            return server.ca_pem

    kept = ca(tmp_path / "ca")
    assert ca(tmp_path / "ca") == kept == (tmp_path / "ca" / "ca.crt").read_bytes()  # a restart keeps it
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o077 == 0  # the key is the owner's only
    assert ca() == ca() != kept


# --- patching -----------------------------------------------------------------------------------------


def test_strategic_merge_matches_containers_by_name(apps: AppsV1Api, standin: KubeStandIn) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy:2"}]}}}}
    patched = apps.patch_namespaced_deployment("web", NS, body, _content_type="application/strategic-merge-patch+json")
    assert patched.metadata is not None and patched.metadata.generation == 2
    assert [(c["name"], c["image"]) for c in containers(standin, "web")] == [("web", IMAGE), ("sidecar", "proxy:2")]


def test_merge_patch_replaces_lists(apps: AppsV1Api, standin: KubeStandIn) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}
    apps.patch_namespaced_deployment("web", NS, body, _content_type="application/merge-patch+json")
    assert containers(standin, "web") == [{"name": "web", "image": "web:2"}]


def test_a_failed_json_patch_test_is_422_and_changes_nothing(apps: AppsV1Api, standin: KubeStandIn) -> None:
    before = standin.deployment(NS, "web")
    operations = [
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "something-else"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:3"},
    ]
    with pytest.raises(ApiException) as info:
        apps.patch_namespaced_deployment("web", NS, operations)
    assert info.value.status == 422
    assert standin.deployment(NS, "web") == before


def test_generation_moves_with_the_spec_resource_version_with_any_change(apps: AppsV1Api, standin: KubeStandIn) -> None:
    before = standin.deployment(NS, "api")["metadata"]
    labelled = apps.patch_namespaced_deployment("api", NS, {"metadata": {"labels": {"owner": "ml"}}})
    assert labelled.metadata is not None
    assert labelled.metadata.generation == before["generation"]
    assert int(labelled.metadata.resource_version or 0) > int(before["resourceVersion"])
    unchanged = apps.patch_namespaced_deployment("api", NS, {"metadata": {"labels": {"owner": "ml"}}})
    assert unchanged.metadata is not None and unchanged.metadata.resource_version == labelled.metadata.resource_version
    status_only = apps.patch_namespaced_deployment("api", NS, {"status": {"replicas": 99}})
    assert status_only.status is not None and status_only.status.replicas == 1  # status is not patched this way


def test_an_invalid_patch_is_refused(apps: AppsV1Api) -> None:
    with pytest.raises(ApiException) as info:
        apps.patch_namespaced_deployment("web", NS, {"spec": {"selector": {"matchLabels": {"app": "other"}}}})
    assert info.value.status == 422
    assert "selector" in json.loads(info.value.body or "{}")["message"]


def test_injected_failures_hit_the_chosen_requests_only(apps: AppsV1Api, standin: KubeStandIn) -> None:
    standin.fail_requests("GET", 1, status=503, after=1, path_contains="/deployments/web")
    apps.read_namespaced_deployment("web", NS)
    apps.read_namespaced_deployment("api", NS)
    with pytest.raises(ApiException) as info:
        apps.read_namespaced_deployment("web", NS)
    assert info.value.status == 503
    apps.read_namespaced_deployment("web", NS)


# --- the controller -------------------------------------------------------------------------


def test_a_rollout_progresses_and_finishes(apps: AppsV1Api, standin: KubeStandIn) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}
    apps.patch_namespaced_deployment("web", NS, body)
    seen: set[tuple[int, int, int]] = set()

    def finished() -> bool:
        status = standin.deployment(NS, "web")["status"]
        seen.add((status.get("replicas", 0), status.get("updatedReplicas", 0), status.get("availableReplicas", 0)))
        return status.get("observedGeneration") == 2 and (
            status.get("updatedReplicas"),
            status.get("availableReplicas"),
        ) == (2, 2)

    assert standin.wait_until(finished)
    assert any(total > 2 for total, _, _ in seen)  # a surge pod ran beside the old ones
    history = standin.replicasets(NS, "web")
    assert [rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in history] == ["1", "2"]


def test_a_broken_image_passes_the_progress_deadline(
    apps: AppsV1Api, standin: KubeStandIn, runtime: ScriptedRuntime
) -> None:
    runtime.unpullable.add("web:broken")
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:broken"}]}}}}
    apps.patch_namespaced_deployment("web", NS, body)

    def reason() -> str:
        conditions = standin.deployment(NS, "web")["status"]["conditions"]
        found: str = next(c["reason"] for c in conditions if c["type"] == "Progressing")
        return found

    assert standin.wait_until(lambda: reason() == "ProgressDeadlineExceeded")
    status = standin.deployment(NS, "web")["status"]
    assert status["availableReplicas"] == 2  # the old pods keep serving
    assert status["updatedReplicas"] == 1


# --- pure helpers -------------------------------------------------------------------------------------


def test_patch_helpers_follow_their_rfcs() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert merge_patch(doc, {"a": {"b": None, "c": [3]}}) == {"a": {"c": [3]}, "d": "x"}
    assert json_patch(doc, [{"op": "add", "path": "/a/c/-", "value": 3}, {"op": "remove", "path": "/d"}]) == {
        "a": {"b": 1, "c": [1, 2, 3]}
    }
    assert json_patch(doc, [{"op": "move", "from": "/d", "path": "/e"}]) == {"a": {"b": 1, "c": [1, 2]}, "e": "x"}
    containers = {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}
    assert strategic_merge(containers, {"containers": [{"name": "b", "$patch": "delete"}]}) == {
        "containers": [{"name": "a", "image": "1"}]
    }
    assert doc == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}  # inputs are never modified


def test_label_selector_parsing_refuses_garbage() -> None:
    requirements = parse_label_selector("app=web,env in (prod, staging)")
    assert all(r({"app": "web", "env": "staging"}) for r in requirements)
    assert not all(r({"app": "web", "env": "dev"}) for r in requirements)
    with pytest.raises(Exception, match="unable to parse requirement"):
        parse_label_selector("app=(web")


# --- the demo entry point -----------------------------------------------------------------------------


@pytest.mark.docker  # the command line runs pods as Docker containers
def test_the_command_line_applies_the_manifest_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    command = [sys.executable, "-m", "standins.kube", "--port", "0", "--token", "demo", "--namespace", "oncology"]
    process = subprocess.Popen(
        [*command, "--kubeconfig", str(kubeconfig), "--apply", "deployments/webservice.yaml"],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        kinds = ["serviceaccount", "deployment", "service", "poddisruptionbudget"]
        assert lines[:4] == [f"{kind}/oncology-webservice created\n" for kind in kinds]
        assert lines[4].startswith("Kubernetes API STAND-IN (not a cluster) listening on https://127.0.0.1:")
        apps = AppsV1Api(connect_kubeconfig(str(kubeconfig)))
        listed = apps.list_namespaced_deployment("oncology", label_selector="app=oncology-webservice,team=ml-platform")
        assert [d.metadata.name for d in listed.items if d.metadata] == ["oncology-webservice"]
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


# --- the kubelet's container states (scripted containers) ---------------------------------------------


def _statuses(apps_client: Any, selector: str) -> list[Any]:
    pods: Any = CoreV1Api(apps_client).list_namespaced_pod(NS, label_selector=selector)
    return [pod.status.container_statuses[0] for pod in pods.items]


def test_a_container_that_keeps_exiting_is_in_crash_loop_back_off_with_its_restarts(
    standin: KubeStandIn, runtime: ScriptedRuntime, tmp_path: Path
) -> None:
    runtime.crashing.add("crash:1")
    standin.kubelet.backoff = 0.05
    standin.add_deployment(NS, "crashing", {"app": "crashing"}, {"crash": "crash:1"}, settle=False)
    client = connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")))

    def looping() -> bool:
        statuses = _statuses(client, "app=crashing")
        return bool(statuses) and statuses[0].restart_count >= 2

    assert standin.wait_until(looping)
    (status,) = _statuses(client, "app=crashing")
    assert status.ready is False and status.last_state.terminated.exit_code == 1
    assert status.state.waiting is None or status.state.waiting.reason == "CrashLoopBackOff"


def test_a_readiness_probe_that_never_succeeds_keeps_the_pod_unready(
    standin: KubeStandIn, runtime: ScriptedRuntime, tmp_path: Path
) -> None:
    runtime.unready.add("slow:1")
    probe = {"httpGet": {"path": "/readyz", "port": 8000}, "periodSeconds": 1}
    container = {"name": "slow", "image": "slow:1", "readinessProbe": probe}
    standin.add_deployment(NS, "slow", {"app": "slow"}, [container], settle=False)
    client = connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")))
    assert standin.wait_until(lambda: bool(_statuses(client, "app=slow")) and _statuses(client, "app=slow")[0].started)
    time.sleep(0.3)
    (status,) = _statuses(client, "app=slow")
    assert status.ready is False and status.state.running is not None
    assert standin.deployment(NS, "slow")["status"].get("availableReplicas", 0) == 0
