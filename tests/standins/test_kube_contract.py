"""Contract: every call the project makes with the official kubernetes client gets an answer that deserializes
into the client's own models (with client-side validation on), from the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    CoreV1Api,
    V1Deployment,
    V1DeploymentList,
    V1Pod,
    V1PodList,
    V1ReplicaSetList,
    V1Service,
    VersionApi,
)

from oncology_pipeline.cluster import JSON_PATCH, STRATEGIC_MERGE_PATCH
from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime

NS = "oncology"
MANIFEST = Path(__file__).resolve().parents[2] / "deployments" / "webservice.yaml"
SELECTOR = "app=oncology-webservice,team=ml-platform"
IMAGE = "registry.local/oncology-webservice@sha256:" + "1" * 64


def model(answer: object, kind: type) -> Any:
    """The answer, after checking that the client deserialized it into `kind`."""
    assert isinstance(answer, kind), type(answer)
    return answer


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiClient]:
    with KubeStandIn("contract-token", runtime=ScriptedRuntime(), step_interval=0.02) as standin:
        client = connect_kubeconfig(str(standin.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")))
        assert client.configuration.client_side_validation
        yield client


@pytest.fixture(scope="module")
def created(api: ApiClient) -> tuple[Any, Any]:
    """The manifest's Deployment and Service, created through the client (every test of the module reads them)."""
    documents = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}  # it holds other kinds too
    deployment, service = documents["Deployment"], documents["Service"]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE
    return (
        model(AppsV1Api(api).create_namespaced_deployment(NS, deployment), V1Deployment),
        model(CoreV1Api(api).create_namespaced_service(NS, service), V1Service),
    )


def test_create_list_read_and_patch_deployments(api: ApiClient, created: tuple[Any, Any]) -> None:
    apps = AppsV1Api(api)
    assert created[0].metadata.generation == 1

    listed = model(apps.list_namespaced_deployment(NS, label_selector=SELECTOR), V1DeploymentList)
    assert [d.metadata.name for d in listed.items] == ["oncology-webservice"]
    assert isinstance(apps.list_deployment_for_all_namespaces(label_selector=SELECTOR), V1DeploymentList)
    body = {"spec": {"template": {"spec": {"containers": [{"name": "oncology-webservice", "image": IMAGE + "0"}]}}}}
    with pytest.raises(Exception, match="422"):
        apps.patch_namespaced_deployment(
            "oncology-webservice", NS, [{"op": "test", "path": "/x", "value": 1}], _content_type=JSON_PATCH
        )
    patched: Any = apps.patch_namespaced_deployment(
        "oncology-webservice", NS, body, _content_type=STRATEGIC_MERGE_PATCH, dry_run="All"
    )
    assert model(patched, V1Deployment).metadata.generation == 2
    read = model(apps.read_namespaced_deployment("oncology-webservice", NS), V1Deployment)
    assert read.metadata.generation == 1  # dry run: nothing stored


def test_replicasets_pods_and_services_deserialize(api: ApiClient, created: tuple[Any, Any]) -> None:
    apps, core = AppsV1Api(api), CoreV1Api(api)
    rs = model(apps.list_namespaced_replica_set(NS, label_selector=SELECTOR), V1ReplicaSetList)
    assert rs.items[0].metadata.annotations["deployment.kubernetes.io/revision"]
    pods = model(core.list_namespaced_pod(NS, label_selector=SELECTOR), V1PodList)
    assert len(pods.items) == 2
    pod = model(core.read_namespaced_pod(pods.items[0].metadata.name, NS), V1Pod)
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert pod.status.container_statuses[0].image == IMAGE
    assert isinstance(core.read_namespaced_service("oncology-webservice", NS), V1Service)
    assert VersionApi(api).get_code().git_version.startswith("v1.")
