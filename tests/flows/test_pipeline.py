"""The whole pipeline end to end under a real Prefect server: moto (S3, ECR) over HTTP, a real Docker
engine and authenticated registry, and the Kubernetes stand-in (reached through a kubeconfig) whose pods run
the pushed image in Docker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from prefect import get_client
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.flow_engine import run_flow
from prefect.states import AwaitingRetry

from flows.pipeline import train_test_publish_deploy
from flows.publish import publish
from flows.rollback import rollback
from flows.train import train
from oncology_model.errors import QualityGateFailed
from oncology_pipeline import aws
from oncology_pipeline.cluster import WEBSERVICE_CONTAINER, is_pinned
from oncology_pipeline.errors import SmokeTestFailed, SuiteFailed
from oncology_pipeline.events import CLUSTER_DRIFT_EVENT
from oncology_pipeline.kubeapi import connect_kubeconfig
from oncology_pipeline.releases import read_record
from oncology_pipeline.settings import load_settings
from oncology_pipeline.summary import PipelineSummary
from standins.kube import DockerRuntime, KubeStandIn
from tests.support import docker_env
from tests.support.canaries import (
    REGISTRY_SECRETS,
    PrivateIndex,
    Sinks,
    flow_run_tree,
    plant_canaries,
    search_image,
    search_prefect,
    search_s3,
)
from tests.support.invariant import assert_invariant, production_annotations, seed_production, snapshot
from tests.support.prefect_runs import artifacts, flow_run, task_runs
from tests.support.stacks import Stack, bucket_keys
from tests.support.workloads import NODE_CREDENTIALS, Workloads, model_version_served, one_replica, serve_image

NS = "oncology"
DEPLOYMENTS = ("oncology-webservice",)
KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.fixture
def standin(stack: Stack, workloads: Workloads) -> Iterator[KubeStandIn]:
    """An earlier model version in production: in S3 (bundle, release record, pointer) and serving
    (deployments/webservice.yaml in a real container, one replica, annotated)."""
    previous = seed_production(stack.s3, stack.settings, workloads.previous_bundle, workloads.previous)
    runtime = DockerRuntime(credentials=lambda registry: NODE_CREDENTIALS)
    with KubeStandIn("e2e-token", runtime=runtime, step_interval=0.1, backoff=1.0) as server:
        serve_image(
            server, NS, workloads.previous, one_replica, annotations=production_annotations(stack.settings, previous)
        )
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


def _summary_of(result: object) -> PipelineSummary:
    assert isinstance(result, PipelineSummary)
    return result


def _summary(overrides: dict[str, Any], version: str) -> PipelineSummary:
    path = Path(overrides["work_dir"]) / "runs" / version / "summary.json"
    return PipelineSummary.model_validate(json.loads(path.read_text()))


def _assert_one_version_released(
    stack: Stack,
    standin: KubeStandIn,
    overrides: dict[str, Any],
    workloads: Workloads,
    state: State[Any],
    before: dict[str, str],
) -> PipelineSummary:
    """A first run (`state`) trained, tested, published, deployed, verified and promoted one version: exactly its
    objects in S3, its digest in the registry and on every Deployment, its model served, its record whole."""
    assert state.type is StateType.COMPLETED, state.message
    summary = _summary_of(state.result())
    version = summary.version
    s = stack.settings

    record = read_record(stack.s3, s.model_bucket, version)
    assert record is not None
    assert bucket_keys(stack.s3, s.model_bucket) - set(before) == {
        f"models/{version}/model.skops",
        f"models/{version}/metadata.json",
        f"releases/{version}.json",
        f"releases/fingerprints/{record.fingerprint['digest']}.json",
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

    assert all(_image(standin, name) == image for name in DEPLOYMENTS)
    for name in DEPLOYMENTS:  # in the same patch: the digest the pods log, and the model it was set for
        (container,) = [
            c
            for c in standin.deployment(NS, name)["spec"]["template"]["spec"]["containers"]
            if c["name"] == WEBSERVICE_CONTAINER
        ]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ONCOLOGY_IMAGE_DIGEST"] == digest and env["ONCOLOGY_IMAGE_MODEL_VERSION"] == version
    assert_invariant(stack.s3, s, standin, version=version, image=image, before=before)
    record = read_record(stack.s3, s.model_bucket, version)
    assert record is not None and record.outcome.startswith("released") and record.verification.passed
    assert record.tests.tests and record.image.digest == digest and record.gate.passed
    assert record.cluster.deployments[0].previous_image == workloads.previous
    assert {"train", "test", "publish", "deploy"} <= set(record.stages)
    assert all(
        record.stages[s].started_at and record.stages[s].ended_at for s in ("train", "test", "publish", "deploy")
    )
    api = connect_kubeconfig(overrides["kubeconfig"])
    assert model_version_served(api, NS) == version  # the pods pulled the pushed digest and serve this version
    assert summary.rollout is not None and summary.rollout.startswith("rolled out")
    assert set(summary.stages) == {"train", "test", "publish", "deploy"} and not summary.skipped
    assert _summary(overrides, version) == summary

    run_id = _run_id(state)
    assert {"pipeline-summary", "release"} <= {a.key for a in artifacts(run_id)}
    return summary


def test_a_gate_rejection_ends_the_run_with_nothing_published_or_deployed(
    stack: Stack, standin: KubeStandIn, overrides: dict[str, Any], moto_endpoint: str, workloads: Workloads
) -> None:
    before = {name: _image(standin, name) for name in DEPLOYMENTS}
    objects = snapshot(stack.s3, stack.settings.model_bucket)
    strict = {**overrides, "gate": {"min_roc_auc": 0.9999}}
    state = train_test_publish_deploy(overrides=strict, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(QualityGateFailed, match="roc_auc"):
        state.result()
    ecr = boto3.client("ecr", endpoint_url=moto_endpoint, region_name="eu-central-1")
    names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert overrides["ecr_repository"] not in names
    assert {name: _image(standin, name) for name in DEPLOYMENTS} == before
    assert_invariant(
        stack.s3, stack.settings, standin, version=workloads.previous_version, image=workloads.previous, before=objects
    )
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
    run_id = _run_id(state)
    runs = task_runs(run_id)
    assert runs["build_image"].state_type is StateType.COMPLETED
    assert runs["smoke_test_image"].state_type is StateType.FAILED
    assert not {"ecr_login", "ensure_repository", "push_image"} & set(runs)
    ecr = boto3.client("ecr", endpoint_url=moto_endpoint, region_name="eu-central-1")
    assert overrides["ecr_repository"] not in [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]


def _is_record(key: str) -> bool:
    return key.startswith("releases/") and key.count("/") == 1


def test_the_readme_sequence_on_demand_training_never_changes_production_and_a_forced_nightly_reruns_every_stage(
    stack: Stack,
    standin: KubeStandIn,
    overrides: dict[str, Any],
    workloads: Workloads,
    private_index: PrivateIndex,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """nightly (the whole pipeline: one version released) -> on-demand random forest (the gate finds it worse than
    the champion; production stays) -> nightly (no change) -> an older digest set by hand (stock kubectl), then a
    no-change nightly with `reconcile: alert` (it alerts and changes nothing) and one with the default (it rolls
    production's recorded digest out again and verifies it; the pointer does not move) -> forced nightly (trains and
    tests again; its unit suite is red here, so it fails at test and production stays, recorded) -> roll back by
    hand to the release before -> a nightly with the rolled-back version's inputs (held: the operator's rollback
    stands, and the run says what would release it).
    Releasing a stored candidate (`model_version=`) takes the step a resumed run takes (`_candidate` in
    flows/pipeline.py, run by test_a_failed_run_resumes_on_prefects_retry_and_on_the_next_night_without_retraining);
    the `model_version=` entry itself has no whole-pipeline test (it had none before: the forest never passed).

    It is also the secrets canary: canary AWS keys, a private package-index credential and the alert webhook URL in
    the environment from the first night on (the first with retried S3 faults and an empty wheel cache, so that pip
    asks the private index), then every sink of every run searched for them (tests/support/canaries.py)."""
    before = snapshot(stack.s3, stack.settings.model_bucket)
    canaries = plant_canaries(monkeypatch, private_index.url)
    stack = replace(stack, s3=aws.client(stack.settings, "s3"))  # the test's own reads sign with the canary key too
    stack.proxy.deny_access_key("testing")  # a request signed with the usual test key fails, the runs' too
    # An empty wheel cache in the run's work dir (searched below): pip downloads, asking the private index.
    monkeypatch.setenv("ONCOLOGY_CACHE_DIR", str(Path(overrides["work_dir"]) / "cache"))
    settings = stack.settings
    stack.proxy.reset(method="HEAD", path=f"/{settings.data_bucket}/{settings.data_key}")  # exceptions, retried
    stack.proxy.fail(503, method="PUT", path="/model.skops")
    nightly = train_test_publish_deploy(overrides=overrides, return_state=True)
    first = _assert_one_version_released(stack, standin, overrides, workloads, nightly, before)
    assert first.image is not None
    # Each canary was in use: the keys signed every request, pip asked the private index, the settings hold the URL.
    credentials = boto3.Session().get_credentials()
    assert credentials is not None and credentials.access_key.encode() == canaries["AWS access key id"]
    assert f"Basic {canaries['index basic auth'].decode()}" in private_index.authorizations
    webhook = load_settings().alert_webhook_url
    assert webhook is not None and canaries["webhook URL token"].decode() in webhook.get_secret_value()

    forest = train(estimator="random_forest", overrides=overrides, return_state=True)
    assert forest.is_failed() and "worse than the champion" in str(forest.message)  # on this data and seed
    assert_invariant(stack.s3, stack.settings, standin, version=first.version, image=first.image)

    objects = snapshot(stack.s3, stack.settings.model_bucket)
    unchanged = train_test_publish_deploy(overrides=overrides, return_state=True)
    assert unchanged.is_completed(), unchanged.message
    quiet = _summary_of(unchanged.result())
    assert quiet.image is None and not quiet.stages and set(quiet.skipped) == {"train", "test", "publish", "deploy"}
    assert quiet.rollout == f"no change: {first.version} stays in production"
    run_id = _run_id(unchanged)
    (note,) = [a for a in artifacts(run_id) if a.key == "no-change"]
    assert first.version in str(note.data) and "force=true" in str(note.data)
    assert snapshot(stack.s3, stack.settings.model_bucket) == objects  # nothing written, nothing moved
    assert_invariant(stack.s3, stack.settings, standin, version=first.version, image=first.image, before=objects)

    api = connect_kubeconfig(overrides["kubeconfig"])
    _kubectl(overrides, "set", "image", f"deployment/{DEPLOYMENTS[0]}", f"{WEBSERVICE_CONTAINER}={workloads.previous}")
    assert standin.wait_until(lambda: standin.controller.complete(NS, DEPLOYMENTS[0]), 120)
    assert model_version_served(api, NS) == workloads.previous_version
    alerted = train_test_publish_deploy(overrides={**overrides, "reconcile": "alert"}, return_state=True)
    _assert_drift_reported(alerted, first.version, workloads.previous, "alert only (reconcile: alert)")
    assert _image(standin, DEPLOYMENTS[0]) == workloads.previous  # changed nothing
    assert model_version_served(api, NS) == workloads.previous_version
    repaired = train_test_publish_deploy(overrides=overrides, return_state=True)
    summary = _assert_drift_reported(repaired, first.version, workloads.previous, "repair: roll production's recorded")
    assert summary.reconcile is not None and summary.reconcile.startswith(f"repaired: {first.image} rolled out again")
    assert "golden cases match" in summary.reconcile
    assert model_version_served(api, NS) == first.version
    assert snapshot(stack.s3, stack.settings.model_bucket) == objects  # the pointer never moved to what was found
    assert_invariant(stack.s3, stack.settings, standin, version=first.version, image=first.image, before=objects)

    red = {**overrides, "unit_tests": "tests/support/always_fails.py"}  # not a model input: the same fingerprint
    forced = train_test_publish_deploy(force=True, overrides=red, return_state=True)
    assert forced.is_failed()
    with pytest.raises(SuiteFailed):
        forced.result()
    assert_invariant(stack.s3, stack.settings, standin, version=first.version, image=first.image, before=objects)
    (key,) = [k for k in snapshot(stack.s3, stack.settings.model_bucket) if _is_record(k) and k not in objects]
    record = read_record(stack.s3, stack.settings.model_bucket, key.removeprefix("releases/").removesuffix(".json"))
    assert record is not None and record.outcome.startswith("failed at test") and not record.production
    production = read_record(stack.s3, stack.settings.model_bucket, first.version)
    assert production is not None  # its inputs are production's: only force made it train and test
    assert record.fingerprint["digest"] == production.fingerprint["digest"]

    back = rollback(workloads.previous_version, reason="recall dropped", overrides=overrides, return_state=True)
    assert back.is_completed() and "golden cases match" in str(back.result())
    assert_invariant(stack.s3, stack.settings, standin, version=workloads.previous_version, image=workloads.previous)
    api = connect_kubeconfig(overrides["kubeconfig"])
    assert model_version_served(api, NS) == workloads.previous_version
    taken_out = read_record(stack.s3, stack.settings.model_bucket, first.version)
    pinned = read_record(stack.s3, stack.settings.model_bucket, workloads.previous_version)
    assert taken_out is not None and taken_out.rolled_back is not None and pinned is not None
    assert (taken_out.rolled_back.to, taken_out.rolled_back.reason) == (workloads.previous_version, "recall dropped")
    assert pinned.pinned is not None and pinned.pinned.replaced == first.version
    assert pinned.pinned.by.startswith("rollback-") and str(_run_id(back)) in pinned.pinned.by

    objects = snapshot(stack.s3, stack.settings.model_bucket)  # a nightly with the rolled-back version's inputs
    held = train_test_publish_deploy(overrides=overrides, return_state=True)
    assert held.is_completed(), held.message
    kept = _summary_of(held.result())
    assert kept.image is None and not kept.stages and set(kept.skipped) == {"train", "test", "publish", "deploy"}
    assert kept.rollout is not None and kept.rollout.startswith(f"Held: {first.version} is not released again: ")
    assert "rollback by rollback-" in kept.rollout and "recall dropped" in kept.rollout
    assert f"model_version={first.version}, or train anew with force=true" in kept.rollout
    assert snapshot(stack.s3, stack.settings.model_bucket) == objects  # nothing trained, written or moved
    assert_invariant(stack.s3, stack.settings, standin, version=workloads.previous_version, image=workloads.previous)

    sinks = Sinks({**canaries, **REGISTRY_SECRETS}, control=first.version)
    states = (nightly, forest, unchanged, forced, back, held)
    runs = [run for state in states for run in flow_run_tree(_run_id(state))]
    assert {"train", "test", "publish", "deploy", "rollback"} <= _flow_names(runs)
    search_prefect(sinks, runs)
    for version in (first.version, workloads.previous_version):
        record = read_record(stack.s3, settings.model_bucket, version)
        assert record is not None
        sinks.search("release record", version, record.model_dump_json())
    search_s3(sinks, stack.s3, [settings.data_bucket, settings.model_bucket, settings.metrics_bucket])
    sinks.search_files("local file", Path(overrides["work_dir"]))
    search_image(sinks, docker_env.docker_client(), first.image)
    assert sinks.found == []
    assert sinks.controlled == set(sinks.searched) - {"task run", "Prefect home"}, sinks.searched  # the version
    assert sinks.searched["image file"] > 1000 and sinks.searched["log"] > 50 and sinks.searched["artifact"] >= 5
    assert sinks.searched["S3 object"] >= 8 and sinks.searched["task run"] >= 20


def _kubectl(overrides: dict[str, Any], *args: str) -> None:
    """The pinned stock kubectl against the stand-in, through the kubeconfig the runs use."""
    home = Path(overrides["work_dir"]).parent / "kubectl-home"  # its discovery cache
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    command = [str(KUBECTL), "--kubeconfig", overrides["kubeconfig"], "--context", overrides["kube_context"]]
    done = subprocess.run([*command, "-n", NS, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _assert_drift_reported(state: State[Any], production: str, found: str, action: str) -> PipelineSummary:
    """A no-change nightly that found a Deployment running `found`: not "no change" in its summary, the drift in its
    `reconcile` artifact, and the drift event (the alert) sent, saying what the run did (`action`)."""
    assert state.is_completed(), state.message
    summary = _summary_of(state.result())
    assert summary.rollout is not None
    assert summary.rollout.startswith(f"No change in the inputs, but the cluster drifted from production {production}")
    assert set(summary.skipped) == {"train", "test", "publish", "deploy"} and summary.image is None
    assert f"deployment {DEPLOYMENTS[0]}: image: found {found}, production's records say" in "\n".join(summary.drifts)
    run_id = _run_id(state)
    (report,) = [a for a in artifacts(run_id) if a.key == "reconcile"]
    repository, digest = found.rsplit("/", 1)[-1].split("@")
    short = f"{repository}@{digest[:19]}"  # the table's form; the full references are in the alert
    assert f"| deployment {DEPLOYMENTS[0]}: image | {short} |" in str(report.data) and action in str(report.data)
    related = EventRelatedFilter(id=[f"prefect.flow-run.{run_id}"])
    wanted = EventFilter(event=EventNameFilter(name=[CLUSTER_DRIFT_EVENT]), related=related)
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while not (events := client.read_events(wanted, limit=10).events) and time.monotonic() < deadline:
            time.sleep(0.5)
    [event] = events
    assert event.resource.id == f"oncology.model-version.{production}"
    assert event.payload["action"].startswith(action) and found in event.payload["drifts"]
    return summary


def _run_id(state: State[Any]) -> uuid.UUID:
    """The flow run a state belongs to."""
    assert state.state_details.flow_run_id is not None
    return state.state_details.flow_run_id


def _flow_names(runs: list[FlowRun]) -> set[str]:
    with get_client(sync_client=True) as client:
        return {client.read_flow(run.flow_id).name for run in runs}


def _fail_at_publish(overrides: dict[str, Any]) -> State[Any]:
    """A run whose smoke test cannot pass: trained, tested, then failed at publish before any push."""
    state = train_test_publish_deploy(overrides={**overrides, "smoke_test_timeout_seconds": 0.01}, return_state=True)
    assert state.is_failed() and state.message and state.message.startswith("failed at publish: ")
    return state


def _assert_resumed(stack: Stack, standin: KubeStandIn, summary: PipelineSummary, failed_version: str) -> None:
    """The resumed run released the failed run's candidate without training or testing it again."""
    assert summary.version == failed_version and summary.image is not None
    assert "not retrained" in summary.stages["train"] and "not re-run" in summary.stages["test"]
    assert set(summary.seconds) == {"train", "publish", "deploy"}  # train: only the candidate's download
    metrics = bucket_keys(stack.s3, stack.settings.metrics_bucket)
    assert len([k for k in metrics if k.startswith("trainer/metrics/metrics-")]) == 1  # trained once
    assert len([k for k in metrics if k.startswith("trainer/test-coverage/")]) == 1  # tested once
    assert_invariant(stack.s3, stack.settings, standin, version=failed_version, image=summary.image)
    record = read_record(stack.s3, stack.settings.model_bucket, failed_version)
    assert record is not None and record.production and record.outcome.startswith("released")


def test_a_failed_run_resumes_on_prefects_retry_and_on_the_next_night_without_retraining(
    stack: Stack, standin: KubeStandIn, overrides: dict[str, Any], workloads: Workloads
) -> None:
    """A run fails at publish (its smoke test); the UI's Retry (the flow run goes to AwaitingRetry and runs again
    with its parameters) finds its candidate by the inputs' fingerprint, pushes it and fails again at deploy; its
    image is then deleted (a lifecycle policy, a person); the next run with the same inputs resumes the same
    candidate, publishes again instead of deploying a digest the registry no longer holds, and releases it.
    Trained and tested once in all."""
    objects = snapshot(stack.s3, stack.settings.model_bucket)
    failed = _fail_at_publish(overrides)
    with pytest.raises(SmokeTestFailed):
        failed.result()
    version = read_flow_run_version(failed)
    assert_invariant(
        stack.s3, stack.settings, standin, version=workloads.previous_version, image=workloads.previous, before=objects
    )  # production serving, and recorded as it was
    record = read_record(stack.s3, stack.settings.model_bucket, version)
    assert record is not None and record.outcome.startswith("failed at publish") and not record.production

    run_id = _run_id(failed)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, AwaitingRetry(message="Retry from the UI"), force=True)
        run = client.read_flow_run(run_id)
    # the smoke test's limit was the flake; a rollout deadline nothing can meet fails the retry at deploy
    parameters = {**run.parameters, "overrides": {**overrides, "rollout_timeout_seconds": 0.5}}
    retried = cast(
        State[Any], run_flow(train_test_publish_deploy, flow_run=run, parameters=parameters, return_type="state")
    )
    assert retried.is_failed() and retried.message and retried.message.startswith("failed at deploy: "), retried.message
    assert flow_run(run_id).run_count == 2
    again = _summary(overrides, version)
    assert "not retrained" in again.stages["train"] and "not re-run" in again.stages["test"]
    assert again.stages["publish"].startswith("pushed ")
    assert_invariant(stack.s3, stack.settings, standin, version=workloads.previous_version, image=workloads.previous)
    record = read_record(stack.s3, stack.settings.model_bucket, version)
    assert record is not None and record.image.digest and not record.production
    repository = str(record.image.repository)
    path = repository.split("/", 1)[1]
    status, _ = docker_env.registry_request(
        f"/v2/{path}/manifests/{record.image.digest}", "AWS", docker_env.MOTO_ECR_PASSWORD, method="DELETE"
    )
    assert status == 202

    resumed = train_test_publish_deploy(overrides=overrides, return_state=True)
    assert resumed.is_completed(), resumed.message
    summary = _summary_of(resumed.result())
    assert summary.version == version and "its image is gone from the registry" in summary.stages["train"]
    assert summary.stages["publish"].startswith("pushed ")
    _assert_resumed(stack, standin, summary, version)


def read_flow_run_version(state: State[Any]) -> str:
    """The pipeline version a run stamped on itself (its name is `train-test-publish-deploy-<version>`)."""
    return flow_run(_run_id(state)).name.removeprefix("train-test-publish-deploy-")


def test_a_stage_over_its_time_limit_fails_the_run_with_the_reason_and_changes_nothing(stack: Stack) -> None:
    """A stage's limit covers the deploy's worst case (the settings refuse less), and the deploy slot's lease is at
    least 10 s: so every other deploy limit small, a 10.5 s stage limit, and a forest too big to grow in it (well over
    the limit) make train run over; its trees grow one by one, so the cancellation lands between two. No cluster
    here: a run that does not deploy does not observe one.

    The run goes in a thread of its own, where Prefect delivers the stage's timeout from a watcher thread. In the main
    thread it sends SIGALRM, which one CI run did not act on (the forest grew for minutes); by my reading of Prefect
    an alarm that lands while a finished task's scope still holds the handler is dropped."""
    limits = {
        "stage_timeout_seconds": 10.5,
        "deploy_lease_seconds": 10,
        "rollout_timeout_seconds": 0.1,
        "smoke_test_timeout_seconds": 0.1,
    }
    slow = {"estimator": "random_forest", "hyperparameters": {"n_estimators": 5_000}}
    overrides = {**stack.overrides, **limits, **slow}
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(train_test_publish_deploy, deploy_image=False, overrides=overrides, return_state=True)
        state: State[Any] = future.result()
    assert state.is_failed() and state.message is not None
    assert state.message == "failed at train: did not finish within 10.5 s (stage_timeout_seconds)"
    keys = snapshot(stack.s3, stack.settings.model_bucket)
    assert f"{stack.settings.model_prefix}/production.json" not in keys  # nothing became production
