"""The Kubernetes manifests in deployments/: valid against a fixed Kubernetes version, and what we promise.

Offline: kubernetes-validate's bundled JSON schemas, strict (unknown fields fail). The Prefect work-pool
template is checked with Prefect's own server-side validation and rendered with Prefect's templating.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.templating import apply_values, find_placeholders

from oncology_pipeline.cluster import WEBSERVICE_CONTAINER, webservice_selector

KUBERNETES_VERSION = "1.33.0"
DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"
MANIFESTS = sorted(DEPLOYMENTS.glob("*.yaml"))
TEAM = "ml-platform"

Manifest = dict[str, Any]


def documents(name: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all((DEPLOYMENTS / name).read_text()) if doc]


def one(name: str, kind: str) -> Manifest:
    found = [doc for doc in documents(name) if doc["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}"
    return found[0]


def hardened(pod_spec: Manifest, container: Manifest) -> None:
    """Non-root, no privilege escalation, no capabilities, read-only root with a writable /tmp."""
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_the_manifests_are_there() -> None:
    assert {path.name for path in MANIFESTS} >= {"webservice.yaml", "training-job.yaml", "pipeline-rbac.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_every_document_is_valid_kubernetes(path: Path) -> None:
    docs = documents(path.name)
    assert docs
    for doc in docs:
        assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.33"


def test_validation_catches_a_wrong_field() -> None:
    """The validator used above does fail on a typo, so a passing test means something."""
    deployment = one("webservice.yaml", "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_webservice_deployment_is_what_the_deploy_stage_patches() -> None:
    deployment = one("webservice.yaml", "Deployment")
    labels = deployment["metadata"]["labels"]
    assert webservice_selector(TEAM) == ",".join(f"{key}={labels[key]}" for key in ("app", "team"))
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "oncology-webservice", "team": TEAM}
    assert template["metadata"]["labels"] == labels
    [container] = template["spec"]["containers"]
    assert container["name"] == WEBSERVICE_CONTAINER
    assert "@sha256:" in container["image"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert deployment["spec"]["progressDeadlineSeconds"] > 0


def test_the_webservice_container_serves_and_is_probed_on_port_8000() -> None:
    container = one("webservice.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_prometheus_scrapes_the_pods_where_the_service_serves_metrics(tmp_path: Path) -> None:
    from oncology_model.service import ServiceSettings, create_app

    template = one("webservice.yaml", "Deployment")["spec"]["template"]
    [container] = template["spec"]["containers"]
    [port] = [p for p in container["ports"] if p["name"] == "http"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port["containerPort"]),
        "prometheus.io/path": "/metrics",
    }
    routes = {getattr(route, "path", None) for route in create_app(ServiceSettings(model_dir=tmp_path)).routes}
    assert "/metrics" in routes


def test_the_webservice_pod_is_hardened() -> None:
    pod_spec = one("webservice.yaml", "Deployment")["spec"]["template"]["spec"]
    hardened(pod_spec, pod_spec["containers"][0])
    assert pod_spec["automountServiceAccountToken"] is False


def test_the_service_and_the_disruption_budget_select_the_pods() -> None:
    deployment = one("webservice.yaml", "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one("webservice.yaml", "Service")
    assert service["spec"]["selector"] == pod_labels
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]
    budget = one("webservice.yaml", "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"] == pod_labels
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_deployer_role_allows_exactly_what_the_deploy_stage_calls() -> None:
    role = one("pipeline-rbac.yaml", "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("apps",), ("deployments",)): {"get", "list", "patch"},
        (("apps",), ("replicasets",)): {"get", "list"},
        (("",), ("pods",)): {"get", "list"},
        (("",), ("services/proxy",)): {"get", "create"},
    }
    binding = one("pipeline-rbac.yaml", "RoleBinding")
    account = one("pipeline-rbac.yaml", "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]


def test_the_training_job_runs_the_training_flow_once() -> None:
    job = one("training-job.yaml", "Job")
    pod_spec = job["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    assert container["command"] == ["python", "-m", "flows.train"]
    assert pod_spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0
    assert pod_spec["serviceAccountName"] == one("pipeline-rbac.yaml", "ServiceAccount")["metadata"]["name"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PREFECT_HOME"].startswith("/tmp/")
    hardened(pod_spec, container)


# --- the Prefect work pool ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work_pool_template() -> Manifest:
    template: Manifest = json.loads((DEPLOYMENTS / "prefect-k8s-work-pool.json").read_text())
    return template


def test_prefect_accepts_the_work_pool_template(work_pool_template: Manifest) -> None:
    """The validation `prefect work-pool create --base-job-template` runs on the server."""
    pool = WorkPoolCreate(name="oncology-k8s", type="kubernetes", base_job_template=work_pool_template)
    assert pool.base_job_template["job_configuration"]["job_manifest"]["kind"] == "Job"
    used = {p.name for p in find_placeholders(work_pool_template["job_configuration"])}
    assert used <= set(work_pool_template["variables"]["properties"])
    variables = work_pool_template["variables"]
    defaults = {name: spec["default"] for name, spec in variables["properties"].items() if "default" in spec}
    jsonschema.Draft202012Validator(variables).validate(defaults)


def test_the_work_pool_renders_a_valid_hardened_job(work_pool_template: Manifest) -> None:
    """Render as the worker does (variable defaults + a flow run's values) and validate the Job."""
    properties = work_pool_template["variables"]["properties"]
    values = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    values |= {
        "name": "oncology-training-abc123",
        "command": "prefect flow-run execute",
        "labels": {**values["labels"], "prefect.io/flow-run-id": "0b0e1c44-5c6a-4d9e-9a2b-3f1f7e0c9d21"},
    }
    rendered = apply_values(work_pool_template["job_configuration"], values)
    manifest = rendered["job_manifest"]
    pod_spec = manifest["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    # What the prefect-kubernetes worker insists on (and then fixes up) before it creates the Job:
    assert container["name"] == "prefect-job"
    assert (pod_spec.pop("parallelism"), pod_spec.pop("completions"), pod_spec["restartPolicy"]) == (1, 1, "Never")
    container["env"] = [{"name": key, "value": value} for key, value in container["env"].items()]
    container["args"] = shlex.split(container["args"])
    manifest["metadata"]["generateName"] = manifest["metadata"]["generateName"].replace("/", "-")

    assert kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True) == "1.33"
    assert manifest["metadata"]["namespace"] == "oncology"
    assert pod_spec["serviceAccountName"] == "oncology-pipeline"
    assert container["image"].startswith("registry.example.com/oncology-pipeline@sha256:")
    assert container["resources"] == {
        "limits": {"cpu": "2", "memory": "2Gi"},
        "requests": {"cpu": "500m", "memory": "1Gi"},
    }
    assert {"name": "PREFECT_HOME", "value": "/tmp/prefect"} in container["env"]
    hardened(pod_spec, container)


def test_the_kaniko_publish_job_pushes_the_webservice_image_within_the_build_limit() -> None:
    from oncology_pipeline.settings import PipelineSettings

    job = one("publish-kaniko-job.yaml", "Job")
    settings = PipelineSettings()
    assert job["spec"]["activeDeadlineSeconds"] == settings.build_timeout_seconds
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])
    assert args["destination"].split("/", 1)[1].startswith(f"{settings.ecr_repository}:")
    assert args["digest-file"] == "/dev/termination-log"
    account = one("publish-kaniko-job.yaml", "ServiceAccount")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
