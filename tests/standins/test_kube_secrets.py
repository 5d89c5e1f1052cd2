"""Secrets in the Kubernetes stand-in: the API's CRUD through the official client, and the kubelet reading them into
containers' environment as the real one does (scripted containers: the environment is what the kubelet asked for)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, V1ObjectMeta, V1Secret
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime

NS = "default"
IMAGE = "registry.local/job@sha256:" + "2" * 64


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def decoded(data: dict[str, str] | None) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (data or {}).items()}


def secret(name: str, data: dict[str, bytes | str] | None = None, **string_data: str) -> V1Secret:
    return V1Secret(metadata=V1ObjectMeta(name=name), data=data, string_data=string_data or None)


def status_of(error: pytest.ExceptionInfo[ApiException]) -> int:
    return int(error.value.status or 0)


@pytest.fixture
def runtime() -> ScriptedRuntime:
    return ScriptedRuntime()


@pytest.fixture
def standin(runtime: ScriptedRuntime) -> Iterator[KubeStandIn]:
    with KubeStandIn("secrets-token", runtime=runtime, step_interval=0.02, backoff=0.05) as server:
        server.kubelet.tick = 0.02
        yield server


@pytest.fixture
def api(standin: KubeStandIn, tmp_path: Path) -> ApiClient:
    return connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")))


def run_job(api: ApiClient, name: str, container: dict[str, Any]) -> None:
    """A one-replica Deployment of `container` (image and name filled in), created through the client."""
    labels = {"app": name}
    manifest: Any = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": IMAGE, **container}]},
            },
        },
    }
    AppsV1Api(api).create_namespaced_deployment(NS, manifest)


def container_status(api: ApiClient, name: str) -> Any:
    """The container status of the Deployment's pod, once there is one."""
    pods: Any = CoreV1Api(api).list_namespaced_pod(NS, label_selector=f"app={name}")
    statuses = pods.items[0].status.container_statuses if pods.items else None
    return statuses[0] if statuses else None


def started_env(standin: KubeStandIn, runtime: ScriptedRuntime, api: ApiClient, name: str) -> dict[str, str]:
    """The environment the kubelet started the Deployment's container with (waits until it runs)."""
    assert standin.wait_until(lambda: getattr(container_status(api, name), "container_id", None) is not None)
    return runtime.started[container_status(api, name).container_id.removeprefix("docker://")].env


def test_secret_crud_folds_string_data_into_base64_data(api: ApiClient) -> None:
    core = CoreV1Api(api)
    body = V1Secret(
        metadata=V1ObjectMeta(name="s3", labels={"app": "pipeline"}),
        data={"region": b64("eu-west-1"), "token": b64("old")},
        string_data={"token": "new"},
    )
    created: Any = core.create_namespaced_secret(NS, body)
    assert (created.type, created.string_data) == ("Opaque", None)
    assert decoded(created.data) == {"region": "eu-west-1", "token": "new"}  # stringData wins over data
    assert created.metadata.uid and created.metadata.creation_timestamp and created.metadata.resource_version
    core.create_namespaced_secret(NS, secret("other", a="b"))
    listed: Any = core.list_namespaced_secret(NS, label_selector="app=pipeline")
    assert [s.metadata.name for s in listed.items] == ["s3"]
    discovered: Any = {r.name: r for r in core.get_api_resources().resources}["secrets"]
    assert discovered.kind == "Secret" and {"create", "update", "patch", "delete"} <= set(discovered.verbs)
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_secret(NS, secret("s3"))
    with pytest.raises(ApiException) as not_base64:
        core.create_namespaced_secret(NS, secret("bad", {"k": "not base64!"}))
    assert (status_of(exists), status_of(not_base64)) == (409, 400)

    stale = V1Secret(metadata=V1ObjectMeta(name="s3", resource_version="1"), string_data={"token": "x"})
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_secret("s3", NS, stale)
    assert status_of(conflict) == 409 and "the object has been modified" in str(conflict.value.body)
    current = V1Secret(
        metadata=V1ObjectMeta(name="s3", resource_version=created.metadata.resource_version),
        string_data={"token": "replaced"},
    )
    replaced: Any = core.replace_namespaced_secret("s3", NS, current)
    assert decoded(replaced.data) == {"token": "replaced"} and replaced.metadata.labels is None  # PUT replaces all
    assert replaced.metadata.uid == created.metadata.uid
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    patched: Any = core.patch_namespaced_secret("s3", NS, {"stringData": {"region": "us-east-1"}})
    assert decoded(patched.data) == {"token": "replaced", "region": "us-east-1"}
    merged: Any = core.patch_namespaced_secret(
        "s3", NS, {"data": {"token": None}}, _content_type="application/merge-patch+json"
    )
    assert decoded(merged.data) == {"region": "us-east-1"}
    with pytest.raises(ApiException) as retyped:
        core.patch_namespaced_secret("s3", NS, {"type": "kubernetes.io/tls"})
    assert status_of(retyped) == 422 and "field is immutable" in str(retyped.value.body)

    deleted: Any = core.delete_namespaced_secret("s3", NS)
    assert (deleted["status"], deleted["details"]["uid"]) == ("Success", created.metadata.uid)  # a dict (client 37)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_secret("s3", NS)
    assert status_of(gone) == 404 and 'secrets \\"s3\\" not found' in str(gone.value.body)


def test_env_overrides_env_from_and_optional_references_are_skipped(
    standin: KubeStandIn, runtime: ScriptedRuntime, api: ApiClient
) -> None:
    core = CoreV1Api(api)
    core.create_namespaced_secret(NS, secret("app", {"MODE": b64("secret"), "9x": b64("-")}))
    core.create_namespaced_secret(NS, secret("db", password="pw", user="ml"))
    container = {
        "envFrom": [
            {"secretRef": {"name": "app"}},
            {"prefix": "DB_", "secretRef": {"name": "db"}},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
        "env": [
            {"name": "MODE", "value": "env"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "NO_KEY", "valueFrom": {"secretKeyRef": {"name": "db", "key": "nope", "optional": True}}},
            {"name": "NO_SECRET", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        ],
    }
    run_job(api, "job", container)
    assert started_env(standin, runtime, api, "job") == {
        "MODE": "env",  # env wins over envFrom
        "DB_password": "pw",
        "DB_user": "ml",
        "PASSWORD": "pw",
    }  # "9x" is no variable name: skipped, as the kubelet skips it


def test_a_missing_secret_or_key_holds_the_container_until_it_exists(
    standin: KubeStandIn, runtime: ScriptedRuntime, api: ApiClient
) -> None:
    core = CoreV1Api(api)
    run_job(api, "late", {"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]})

    def waiting_message() -> str | None:
        status = container_status(api, "late")
        waiting = status.state.waiting if status is not None else None
        return f"{waiting.reason}: {waiting.message}" if waiting is not None else None

    assert standin.wait_until(lambda: waiting_message() == 'CreateContainerConfigError: secret "creds" not found')
    assert standin.pods(NS, "app=late")[0]["status"]["phase"] == "Pending"
    core.create_namespaced_secret(NS, secret("creds", other="x"))
    expected = "CreateContainerConfigError: couldn't find key token in Secret default/creds"
    assert standin.wait_until(lambda: waiting_message() == expected)
    core.patch_namespaced_secret("creds", NS, {"stringData": {"token": "t0k3n"}})
    assert started_env(standin, runtime, api, "late") == {"TOKEN": "t0k3n"}
    assert container_status(api, "late").restart_count == 0
