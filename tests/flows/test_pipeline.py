"""The whole pipeline end to end under a real Prefect server: moto (S3, ECR) over HTTP, a real Docker
engine and authenticated registry, and the Kubernetes stand-in (reached through a kubeconfig) whose pods run
the pushed image in Docker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.client.schemas.objects import StateType

from flows.pipeline import train_test_publish_deploy
from flows.publish import publish
from oncology_model.errors import QualityGateFailed
from oncology_pipeline.cluster import WEBSERVICE_CONTAINER, connect_kubeconfig, is_pinned
from oncology_pipeline.errors import SmokeTestFailed
from oncology_pipeline.summary import PipelineSummary
from standins.kube import DockerRuntime, KubeStandIn
from tests.flows.conftest import Stack, bucket_keys
from tests.support import docker_env
from tests.support.prefect_runs import artifacts, task_runs
from tests.support.workloads import NODE_CREDENTIALS, Workloads, model_version_served, serve_image

NS = "oncology"
DEPLOYMENTS = ("oncology-webservice",)


@pytest.fixture
def standin(workloads: Workloads) -> Iterator[KubeStandIn]:
    """deployments/webservice.yaml serving an earlier model version in real containers."""
    runtime = DockerRuntime(credentials=lambda registry: NODE_CREDENTIALS)
    with KubeStandIn("e2e-token", runtime=runtime, step_interval=0.1, backoff=1.0) as server:
        serve_image(server, NS, workloads.previous)
        yield server


@pytest.fixture
def overrides(stack: Stack, standin: KubeStandIn, moto_endpoint: str, tmp_path: Path) -> dict[str, Any]:
    """Everything local: S3 behind the fault proxy, ECR from moto, the registry, the stand-in; a small unit suite."""
    docker_env.require_image(docker_env.docker_client(), docker_env.BASE_IMAGE)
    return {
        **stack.overrides,
        "aws_endpoint_url": moto_endpoint,
        "registry_address": docker_env.registry_address(),
        "base_image": docker_env.BASE_IMAGE,
        "ecr_repository": f"oncology-e2e-{uuid.uuid4().hex[:8]}",
        "kubeconfig": str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")),
        "kube_context": "kube-standin",
        "kube_namespace": NS,
        "rollout_poll_seconds": 0.2,
        "rollout_timeout_seconds": 90,
        "unit_tests": "tests/oncology_model/test_datamodel.py",
    }


def _image(standin: KubeStandIn, name: str, container: str = WEBSERVICE_CONTAINER) -> str:
    containers = standin.deployment(NS, name)["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] == container))


def _summary(overrides: dict[str, Any], version: str) -> PipelineSummary:
    path = Path(overrides["work_dir"]) / "runs" / version / "summary.json"
    return PipelineSummary.model_validate(json.loads(path.read_text()))


def test_the_whole_pipeline_trains_tests_publishes_and_deploys_one_version(
    stack: Stack, standin: KubeStandIn, overrides: dict[str, Any]
) -> None:
    state = train_test_publish_deploy(overrides=overrides, return_state=True)
    assert state.type is StateType.COMPLETED, state.message
    summary: PipelineSummary = state.result()
    version = summary.version
    s = stack.settings

    assert bucket_keys(stack.s3, s.model_bucket) == {
        f"models/{version}/model.skops",
        f"models/{version}/metadata.json",
        "models/production.json",
    }
    assert bucket_keys(stack.s3, s.metrics_bucket) == {
        f"trainer/metrics/metrics-{version}.json",
        "trainer/metrics/history.csv",
        "trainer/metrics/quicksight-manifest.json",
        f"trainer/unittest-coverage/unittest-coverage-{version}.json",
        f"trainer/test-coverage/test-coverage-{version}.json",
    }
    coverage = json.loads(
        stack.s3.get_object(Bucket=s.metrics_bucket, Key=f"trainer/test-coverage/test-coverage-{version}.json")[
            "Body"
        ].read()
    )
    assert coverage["totals"]["percent_covered"] > 0 and "oncology_model/classifier.py" in coverage["files"]

    image = summary.image
    assert image is not None and is_pinned(image)
    repository, digest = image.split("@")
    assert repository == f"{overrides['registry_address']}/{overrides['ecr_repository']}"
    login = (docker_env.MOTO_ECR_USER, docker_env.MOTO_ECR_PASSWORD)
    manifest = f"/v2/{overrides['ecr_repository']}/manifests"
    status, headers = docker_env.registry_request(f"{manifest}/{version}", *login, docker_env.MANIFEST_TYPES)
    assert status == 200 and headers.get("Docker-Content-Digest") == digest  # the version tag is that digest
    docker_env.registry_request(f"{manifest}/{digest}", *login, method="DELETE")  # give the space back

    assert all(_image(standin, name) == image for name in DEPLOYMENTS)
    api = connect_kubeconfig(overrides["kubeconfig"])
    assert model_version_served(api, NS) == version  # the pods pulled the pushed digest and serve this version
    assert summary.rollout is not None and summary.rollout.startswith("rolled out")
    assert set(summary.stages) == {"train", "test", "publish", "deploy"} and not summary.skipped
    assert _summary(overrides, version) == summary

    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert "pipeline-summary" in {a.key for a in artifacts(run_id)}


def test_a_gate_rejection_ends_the_run_with_nothing_published_or_deployed(
    stack: Stack, standin: KubeStandIn, overrides: dict[str, Any], moto_endpoint: str
) -> None:
    before = {name: _image(standin, name) for name in DEPLOYMENTS}
    strict = {**overrides, "gate": {"min_roc_auc": 0.9999}}
    state = train_test_publish_deploy(overrides=strict, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(QualityGateFailed, match="roc_auc"):
        state.result()
    ecr = boto3.client("ecr", endpoint_url=moto_endpoint, region_name="eu-central-1")
    names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert overrides["ecr_repository"] not in names
    assert {name: _image(standin, name) for name in DEPLOYMENTS} == before
    assert "models/production.json" not in bucket_keys(stack.s3, stack.settings.model_bucket)
    runs = [p for p in (Path(overrides["work_dir"]) / "runs").iterdir() if (p / "summary.json").exists()]
    summary = PipelineSummary.model_validate(json.loads((runs[0] / "summary.json").read_text()))
    assert summary.stages["train"].startswith("FAILED") and set(summary.skipped) == {"test", "publish", "deploy"}


def test_a_failed_smoke_test_stops_publish_before_any_push(
    stack: Stack, overrides: dict[str, Any], model_bundle_dir: Path, moto_endpoint: str
) -> None:
    state = publish(
        bundle_dir=model_bundle_dir, overrides={**overrides, "smoke_test_timeout_seconds": 0.01}, return_state=True
    )
    assert state.type is StateType.FAILED
    with pytest.raises(SmokeTestFailed):
        state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert runs["build_image"].state_type is StateType.COMPLETED
    assert runs["smoke_test_image"].state_type is StateType.FAILED
    assert not {"ecr_login", "ensure_repository", "push_image"} & set(runs)
    ecr = boto3.client("ecr", endpoint_url=moto_endpoint, region_name="eu-central-1")
    assert overrides["ecr_repository"] not in [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
