"""The pipeline under faults, one table: each case injects one fault into a real server (moto behind a fault
proxy, the registry behind a TCP proxy, the Kubernetes stand-in's API, a Docker container, a killed process),
runs the real flow(s) under a real Prefect server, and checks the outcome (state, the cause in the message,
retries counted, a time bound) and the release invariant: the production pointer, the image and annotations
the cluster runs and the release records agree, and no object that existed before is gone.

The cases are grouped by what they need: a scripted cluster (no containers), the registry, or production
serving in real containers. docs/reliability.md lists them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import State, StateType
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

import flows.deploy
from flows.deploy import deploy
from flows.pipeline import train_test_publish_deploy
from flows.publish import publish
from flows.train import train
from oncology_model.versioning import new_version
from oncology_pipeline import aws, modelstore, releases
from oncology_pipeline.errors import ConfigurationError, PushFailed, RolloutFailed, TransientError
from oncology_pipeline.kubeapi import connect_kubeconfig
from oncology_pipeline.registry import RegistryCredentials, push_image
from oncology_pipeline.releases import ANNOTATION_VERSION
from standins.kube import KubeStandIn
from tasks.policy import NETWORK_RETRIES
from tests.support import docker_env
from tests.support.clusters import NEW, NS, OLD, Scripted, image_of, kube_overrides, serving_standin
from tests.support.docker_env import publish_overrides
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.invariant import DEPLOYMENT, assert_invariant, snapshot
from tests.support.moto_server import free_port
from tests.support.prefect_runs import latest_flow_run, task_runs
from tests.support.registry_proxy import BLOB_UPLOAD, MANIFEST_PUT, RegistryProxy
from tests.support.stacks import Stack
from tests.support.workloads import Workloads, model_version_served, standin_containers

PROJECT_DIR = Path(__file__).resolve().parents[2]
#: A flow run's own start, state changes and end on a loaded 2-core machine, beyond its tasks' retries.
FLOW_OVERHEAD_SECONDS = 60.0


def retry_budget() -> float:
    """The longest a network task can take to give up: every back-off at its jitter's upper bound, and every
    attempt waiting out the S3 client's connect timeout (tasks/policy.py, oncology_pipeline/aws.py)."""
    retries = int(NETWORK_RETRIES["retries"])
    delays = NETWORK_RETRIES["retry_delay_seconds"](retries)
    jitter = float(NETWORK_RETRIES["retry_jitter_factor"])
    connect = float(vars(aws._CLIENT_CONFIG)["connect_timeout"])
    return float(sum(delays)) * (1 + jitter) + (retries + 1) * connect


def least_backoff() -> float:
    """The shortest time the back-offs of a task that uses all its retries take (jitter at its lower bound)."""
    retries = int(NETWORK_RETRIES["retries"])
    delays = NETWORK_RETRIES["retry_delay_seconds"](retries)
    return float(sum(delays)) * (1 - float(NETWORK_RETRIES["retry_jitter_factor"]))


ATTEMPTS = int(NETWORK_RETRIES["retries"]) + 1


# --- the table ------------------------------------------------------------------------------------------------


@dataclass
class Env:
    """What a case injects into and runs against."""

    stack: Stack
    standin: KubeStandIn
    overrides: dict[str, Any]
    production: tuple[str | None, str]  # version and image serving before the case
    candidate: tuple[str, str]  # a stored candidate's version, and an image to deploy for it
    registry: RegistryProxy | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def proxy(self) -> FaultProxy:
        return self.stack.proxy


@dataclass(frozen=True)
class Expect:
    """A case's outcome: the final state, a pattern the state message (or the raised error) must match, the
    exception `state.result()` raises, how often named tasks ran, who is production afterwards ("before" or
    "candidate"), an upper bound on the run's seconds, and a check of the case's own."""

    state: StateType
    message: str | None = None
    error: type[BaseException] | None = None
    runs: dict[str, int] = field(default_factory=dict)
    production: str = "before"
    within: float | None = None
    check: Callable[[Env, State[Any]], None] | None = None


@dataclass(frozen=True)
class Case:
    """One row: its name, how the fault is injected, which flow runs, and what must come out."""

    name: str
    inject: Callable[[Env], object]
    run: Callable[[Env], State[Any]]
    expect: Expect

    def __str__(self) -> str:  # the test id
        return self.name


def _train(env: Env) -> State[Any]:
    state: State[Any] = train(overrides=env.overrides, return_state=True)
    return state


def _pipeline(env: Env) -> State[Any]:
    state: State[Any] = train_test_publish_deploy(overrides=env.overrides, return_state=True)
    return state


def _deploy(env: Env) -> State[Any]:
    version, image = env.candidate
    state: State[Any] = deploy(image, version, overrides=env.overrides, return_state=True)
    return state


def _stop_s3(env: Env) -> None:
    """S3 is gone: nothing listens where the endpoint points."""
    env.overrides = {**env.overrides, "s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}


def _run_and_check(case: Case, env: Env) -> State[Any]:
    """Inject, run the flow, and check the state, message, retries, time bound and the invariant."""
    objects = snapshot(env.stack.s3, env.stack.settings.model_bucket)
    case.inject(env)
    start = time.monotonic()
    state = case.run(env)
    elapsed = env.notes["elapsed"] = time.monotonic() - start
    env.proxy.clear()  # the checks below read S3 through the same proxy
    expect = case.expect
    assert state.type is expect.state, f"{case.name}: {state.type} {state.message}"
    if expect.message is not None:
        assert state.message is not None and re.search(expect.message, state.message), state.message
    if expect.error is not None:
        with pytest.raises(expect.error, match=expect.message):
            state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    for name, count in expect.runs.items():
        assert runs[name].run_count == count, f"{name} ran {runs[name].run_count} times, expected {count}"
    if expect.within is not None:
        assert elapsed < expect.within, f"{case.name} took {elapsed:.1f} s, more than {expect.within:.0f} s"
    version, image = env.production if expect.production == "before" else env.candidate
    assert_invariant(env.stack.s3, env.stack.settings, env.standin, version=version, image=image, before=objects)
    if expect.check is not None:
        expect.check(env, state)
    return state


# --- S3: transient faults are retried and counted; S3 gone for good fails within the retry budget ------------


def _waited_its_backoffs(env: Env, state: State[Any]) -> None:
    """Every retry waited its back-off: the run did not give up early."""
    assert env.notes["elapsed"] >= least_backoff(), env.notes["elapsed"]


S3_CASES = [
    Case(
        "s3-503-on-the-data-download-twice",
        lambda env: env.proxy.fail(503, method="GET", path=f"/{env.stack.settings.data_bucket}/", count=2),
        _train,
        Expect(StateType.COMPLETED, runs={"download_training_data": 3}),
    ),
    Case(
        "s3-resets-the-model-upload-twice",
        lambda env: env.proxy.reset(method="PUT", path="/model.skops", count=2),
        _train,
        Expect(StateType.COMPLETED, runs={"upload_model_bundle": 3}),
    ),
    Case(
        "s3-500-on-the-metrics-history",
        lambda env: env.proxy.fail(500, method="GET", path="/trainer/metrics/history.csv", count=1),
        _train,
        Expect(StateType.COMPLETED, runs={"record_metrics_history": 2}),
    ),
    Case(
        "s3-refusing-everything",
        lambda env: env.proxy.fail(503, count=1_000_000),
        _pipeline,
        Expect(
            StateType.FAILED,
            message=r"\(503\) when calling the HeadObject operation.*Service Unavailable",
            runs={"download_training_data": ATTEMPTS},
            within=retry_budget() + FLOW_OVERHEAD_SECONDS,
            check=_waited_its_backoffs,
        ),
    ),
    Case(
        "s3-server-stopped",
        _stop_s3,
        _pipeline,
        Expect(
            StateType.FAILED,
            message=r"Could not connect to the endpoint URL: \"http://127\.0\.0\.1:\d+/",
            runs={"download_training_data": ATTEMPTS},
            within=retry_budget() + FLOW_OVERHEAD_SECONDS,
            check=_waited_its_backoffs,
        ),
    ),
]


@pytest.mark.parametrize("case", S3_CASES, ids=str)
def test_s3_faults(case: Case, stack: Stack, scripted: Scripted) -> None:
    env = Env(stack, scripted.standin, scripted.overrides, (scripted.production, OLD), (scripted.version, NEW))
    state = _run_and_check(case, env)
    if state.is_completed():  # the run's own candidate is whole in S3
        outcome = state.result()
        keys = modelstore.version_keys(
            stack.s3, stack.settings.model_bucket, stack.settings.model_prefix, outcome.version
        )
        assert {k.rsplit("/", 1)[-1] for k in keys} == {"model.skops", "metadata.json"}
    else:
        run_id = state.state_details.flow_run_id
        assert run_id is not None
        assert not {"train", "test", "publish", "deploy"} & set(task_runs(run_id))


# --- the registry: a refused push and a push dropped mid-stream; no deploy, and a retry is idempotent by digest --


def _publish(env: Env) -> State[Any]:
    state: State[Any] = publish(
        version=env.notes["version"], bundle_dir=env.notes["bundle"], overrides=env.overrides, return_state=True
    )
    return state


def _manifest_status(env: Env, reference: str) -> tuple[int, dict[str, str]]:
    """The registry's answer for `repository:reference`, asked directly (not through the proxy)."""
    login = (docker_env.MOTO_ECR_USER, docker_env.MOTO_ECR_PASSWORD)
    path = f"/v2/{env.overrides['ecr_repository']}/manifests/{reference}"
    return docker_env.registry_request(path, *login, docker_env.MANIFEST_TYPES)


def _nothing_landed(env: Env, state: State[Any]) -> None:
    """The failed push left no image under the version's tag."""
    assert _manifest_status(env, env.notes["version"])[0] == 404


def _a_retry_after_the_drop_is_idempotent(env: Env, state: State[Any]) -> None:
    """The layers landed before the manifest was cut: publishing again sends no blob, only the manifest; a push
    repeated after that finds the image by its digest and sends nothing."""
    _nothing_landed(env, state)
    registry = env.registry
    assert registry is not None
    assert registry.rules[0].hits == 1  # the blob upload that was cut (the engine sent it again)
    registry.clear()
    again = _publish(env)
    assert again.type is StateType.COMPLETED, again.message
    image = again.result()
    assert not registry.seen(rb"(POST|PATCH) /v2/\S+/blobs/uploads/"), registry.requests  # nothing pushed again
    assert len(registry.seen(MANIFEST_PUT)) == 1
    status, headers = _manifest_status(env, env.notes["version"])
    repository, digest = image.split("@")
    assert status == 200 and headers.get("Docker-Content-Digest") == digest
    registry.clear()  # what the publish task does when Prefect retries it after the registry stored the image
    version, login = env.notes["version"], (docker_env.MOTO_ECR_USER, docker_env.MOTO_ECR_PASSWORD)
    credentials = RegistryCredentials(registry.address, login[0], SecretStr(login[1]))
    log: list[str] = []
    source = f"{env.overrides['ecr_repository']}:{version}"  # the image the publish run built
    with contextlib.closing(docker.from_env()) as client:
        assert push_image(client, repository, version, credentials, log.append, source_image=source) == digest
    assert log == [f"{repository}:{version} is already in the registry as {digest} (same image): not pushed again"]
    assert not registry.seen(MANIFEST_PUT) and not registry.seen(BLOB_UPLOAD), registry.requests
    docker_env.registry_request(f"/v2/{env.overrides['ecr_repository']}/manifests/{digest}", *login, method="DELETE")


def _arm_drop(env: Env) -> None:
    assert env.registry is not None
    env.registry.cut(BLOB_UPLOAD, after_bytes=4096, count=1)  # one blob cut mid-stream: the engine sends it again
    env.registry.cut(MANIFEST_PUT, after_bytes=256)  # every manifest cut: the push never completes


REGISTRY_CASES = [
    Case(
        "registry-refuses-the-push",
        # the manifest PUT refused (a push role without ecr:PutImage): the engine does not retry a manifest; a
        # refused layer upload fails the same way after the engine's own 5 retries (50 s of back-off)
        lambda env: env.registry.refuse(MANIFEST_PUT) if env.registry else None,
        _publish,
        Expect(
            StateType.FAILED,
            message=r"refused the push .*denied",
            error=PushFailed,
            runs={"push_image": 1},  # a refusal is not retried
            check=_nothing_landed,
        ),
    ),
    Case(
        "registry-drops-the-push-mid-stream",
        _arm_drop,
        _publish,
        Expect(
            StateType.FAILED,
            message=r"broke off",
            error=TransientError,
            runs={"push_image": ATTEMPTS},
            check=_a_retry_after_the_drop_is_idempotent,
        ),
    ),
]


@pytest.mark.parametrize("case", REGISTRY_CASES, ids=str)
def test_registry_faults(
    case: Case,
    stack: Stack,
    scripted: Scripted,
    registry: RegistryProxy,
    moto_endpoint: str,
    publish_work: Path,
    model_bundle_dir: Path,
    built_image: Any,
) -> None:
    """Publish through the registry proxy; production (S3 and cluster) must not move."""
    docker_env.require_image(docker_env.docker_client(), docker_env.BASE_IMAGE)
    repository = f"oncology-faults-{uuid.uuid4().hex[:8]}"
    overrides = publish_overrides(scripted.overrides, moto_endpoint, registry.address, publish_work, repository)
    env = Env(stack, scripted.standin, overrides, (scripted.production, OLD), (scripted.version, NEW), registry)
    env.notes.update(version=new_version(), bundle=model_bundle_dir)
    _run_and_check(case, env)
    assert scripted.standin.requests_made("PATCH") == []  # no deploy


# --- the cluster with a scripted kubelet: set_image failing half-way, a rollout never ready, a lost lease, and
# --- a process killed in the middle of a model upload --------------------------------------------------------

CANARY = "oncology-webservice-canary"


def _second_deployment_refusing_patches(env: Env) -> None:
    """A second matching Deployment whose PATCH the API server answers 500, every time."""
    live = env.standin.deployment(NS, DEPLOYMENT)
    manifest = {
        "metadata": {
            "name": CANARY,
            "labels": live["metadata"]["labels"],
            "annotations": live["metadata"]["annotations"],
        },
        "spec": {
            "replicas": 1,
            "selector": live["spec"]["selector"],
            "template": live["spec"]["template"],
        },
    }
    env.standin.add_manifest(manifest, namespace=NS)
    env.standin.fail_requests("PATCH", 1_000_000, status=500, path_contains=f"/deployments/{CANARY}")


def _both_deployments_unchanged(env: Env, state: State[Any]) -> None:
    for name in (DEPLOYMENT, CANARY):
        assert image_of(env.standin, name) == OLD
        annotations = env.standin.deployment(NS, name)["metadata"]["annotations"]
        assert annotations.get(ANNOTATION_VERSION) == env.production[0]


def _hanging_rollout(env: Env) -> None:
    env.overrides = {**env.overrides, "rollout_timeout_seconds": 1.5, "rollout_poll_seconds": 0.05}


def _rolled_back_once(env: Env, state: State[Any]) -> None:
    patches = env.standin.requests_made("PATCH")
    assert len(patches) == 2, patches  # the new image, then the previous one back


def _interrupt_the_rollout(env: Env) -> None:
    """A cancellation, what a lost strict concurrency lease becomes, while the rollout is watched."""

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise asyncio.CancelledError

    env.notes["monkeypatch"].setattr(flows.deploy, "wait_for_rollout", interrupted)


def _deploy_interrupted(env: Env) -> State[Any]:
    """The run ends Crashed and the cancellation goes on up; its state is read back from the API."""
    with pytest.raises(asyncio.CancelledError):
        _deploy(env)
    run = latest_flow_run(f"deploy-{env.candidate[0]}")
    assert run.state is not None
    return run.state


def _kill_when_held(env: Env, stall: Fault, log_name: str, code: str, *args: str) -> None:
    """Run `python -c code args` as a flow-run process would, SIGKILL it once S3 holds the request `stall` waits for,
    then let the held request go (its connection is dropped: it never lands)."""
    environment = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    log = env.notes["tmp_path"] / log_name
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args], cwd=PROJECT_DIR, env=environment, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 180
            while not stall.reached.wait(0.2):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
            stall.released.set()


_TRAIN_IN_A_PROCESS = (
    "import json, sys; from flows.train import train; train(sys.argv[1], overrides=json.loads(sys.argv[2]))"
)


def _killed_mid_upload_then_repeated(env: Env) -> State[Any]:
    """A worker process runs `train`; SIGKILL while S3 holds its model upload; then the run is repeated."""
    version, settings = new_version(), env.stack.settings
    stall = env.proxy.stall(method="PUT", path=f"/{settings.model_prefix}/{version}/model.skops")
    _kill_when_held(env, stall, "killed-train.log", _TRAIN_IN_A_PROCESS, version, json.dumps(env.overrides))
    keys = {
        k for k in snapshot(env.stack.s3, settings.model_bucket) if k.startswith(f"{settings.model_prefix}/{version}/")
    }
    assert f"{settings.model_prefix}/{version}/model.skops" not in keys  # the held upload never landed
    with pytest.raises(ConfigurationError, match=r"is incomplete \(model\.skops missing\)"):  # not a version
        modelstore.version_keys(env.stack.s3, settings.model_bucket, settings.model_prefix, version)
    refused = deploy(NEW, version, overrides=env.overrides, return_state=True)
    assert refused.is_failed() and env.standin.requests_made("PATCH") == []  # refused before any change
    env.notes["version"] = version
    repeated: State[Any] = train(version, overrides=env.overrides, return_state=True)
    return repeated


def _whole_bundle_stored(env: Env, state: State[Any]) -> None:
    settings, version = env.stack.settings, env.notes["version"]
    outcome = state.result()
    keys = modelstore.version_keys(env.stack.s3, settings.model_bucket, settings.model_prefix, version)
    for key in keys:
        local = outcome.bundle_dir / key.rsplit("/", 1)[-1]
        stored = env.stack.s3.get_object(Bucket=settings.model_bucket, Key=key)["Body"].read()
        assert stored == local.read_bytes(), key
    record = releases.read_record(env.stack.s3, settings.model_bucket, version)
    assert record is not None and record.gate.passed and not record.production


SCRIPTED_CASES = [
    Case(
        "kube-api-500-on-the-second-deployments-patch",
        _second_deployment_refusing_patches,
        _deploy,
        Expect(
            StateType.FAILED,
            message=rf"HTTP 500.*The previous image is back on: {DEPLOYMENT}\.",
            error=TransientError,
            runs={"set_image": ATTEMPTS},
            within=retry_budget() + FLOW_OVERHEAD_SECONDS,
            check=_both_deployments_unchanged,
        ),
    ),
    Case(
        "rollout-never-ready",
        _hanging_rollout,
        _deploy,
        Expect(
            StateType.FAILED,
            message=r"did not finish within 1\.5 s.*(ErrImagePull|ImagePullBackOff).*Rolled back",
            error=RolloutFailed,
            check=_rolled_back_once,
        ),
    ),
    Case(
        "concurrency-lease-lost-mid-deploy",
        _interrupt_the_rollout,
        _deploy_interrupted,
        Expect(StateType.CRASHED, check=_rolled_back_once),
    ),
    Case(
        "process-killed-mid-model-upload-then-repeated",
        lambda env: None,
        _killed_mid_upload_then_repeated,
        Expect(StateType.COMPLETED, check=_whole_bundle_stored),
    ),
]


@pytest.mark.parametrize("case", SCRIPTED_CASES, ids=str)
def test_scripted_cluster_faults(
    case: Case, stack: Stack, scripted: Scripted, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(stack, scripted.standin, scripted.overrides, (scripted.production, OLD), (scripted.version, NEW))
    env.notes.update(monkeypatch=monkeypatch, tmp_path=tmp_path)
    _run_and_check(case, env)


# --- production serving in real containers: releases that do not serve, the API losing a PATCH reply, two
# --- deploys at once --------------------------------------------------------------------------------------------


@pytest.fixture
def serving(stack: Stack, workloads: Workloads, model_bundle_dir: Path) -> Iterator[KubeStandIn]:
    """The previous version in production and serving in 2 real containers; the current model a candidate."""
    with serving_standin(stack.s3, stack.settings, workloads, model_bundle_dir) as server:
        yield server


def _release(workload: str, version: str) -> Callable[[Env], None]:
    """Deploy `workload` (an image of the session's Workloads) as model `version` ("current"/"previous")."""

    def inject(env: Env) -> None:
        workloads: Workloads = env.notes["workloads"]
        env.candidate = (getattr(workloads, f"{version}_version"), getattr(workloads, workload))
        env.notes["serving"] = {c.id for c in standin_containers(env.notes["docker"], env.standin)}

    return inject


def _rolled_back_to_production(env: Env, state: State[Any]) -> None:
    """The rollback restored the previous pods (never replaced when the new ones never got ready), and the
    Service answers with production's model; the record says rolled back."""
    workloads: Workloads = env.notes["workloads"]
    assert env.standin.wait_until(lambda: env.standin.controller.complete(NS, DEPLOYMENT), 30)
    if env.candidate[1] != workloads.current:
        assert {c.id for c in standin_containers(env.notes["docker"], env.standin)} == env.notes["serving"]
    assert model_version_served(connect_kubeconfig(env.overrides["kubeconfig"]), NS) == workloads.previous_version
    record = releases.read_record(env.stack.s3, env.stack.settings.model_bucket, env.candidate[0])
    assert record is not None and record.rollout.outcome == "rolled back"
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    failed = "verify_release" if env.candidate[1] == workloads.current else "wait_for_rollout"
    assert runs[failed].state_type is StateType.FAILED
    assert runs["rollback"].state_type is StateType.COMPLETED and "promote_model" not in runs
    assert record.verification.passed is (False if failed == "verify_release" else None)  # None: not reached
    assert not record.promoting


def _s3_failing_after_the_pointer_write(env: Env) -> None:
    """The previous version's record refuses every write of the promotion's attempts: they all fail after the
    pointer write (releases.promote writes it after the pointer)."""
    _release("current", "current")(env)
    env.proxy.fail(503, method="PUT", path=f"/releases/{env.production[0]}.json", count=ATTEMPTS)


def _promoted_and_its_records_finished(env: Env, state: State[Any]) -> None:
    """Nothing was rolled back: the pointer had moved, so the run finished the records instead."""
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert runs["promote_model"].state_type is StateType.FAILED and runs["promote_model"].run_count == ATTEMPTS
    assert runs["finish_promotion"].state_type is StateType.COMPLETED and "rollback" not in runs
    assert model_version_served(connect_kubeconfig(env.overrides["kubeconfig"]), NS) == env.candidate[0]
    old = releases.read_record(env.stack.s3, env.stack.settings.model_bucket, env.production[0] or "")
    assert old is not None and (old.production, old.superseded_by) == (False, env.candidate[0])


def _patch_reply_lost(env: Env) -> None:
    _release("current", "current")(env)
    env.standin.fail_requests("PATCH", 1, status=500, path_contains=f"/deployments/{DEPLOYMENT}", applied=True)


def _served_after_the_retry(env: Env, state: State[Any]) -> None:
    """The landed PATCH was undone, set_image ran again, and the new model serves."""
    assert len(env.standin.requests_made("PATCH")) == 3  # landed (reply lost), put back, patched again
    assert model_version_served(connect_kubeconfig(env.overrides["kubeconfig"]), NS) == env.candidate[0]


_DEPLOY_IN_A_PROCESS = (
    "import json, sys; from flows.deploy import deploy; "
    "deploy(sys.argv[1], sys.argv[2], overrides=json.loads(sys.argv[3]))"
)


def _killed_between_the_record_writes_then_deployed_again(env: Env) -> State[Any]:
    """A process deploys the candidate; SIGKILL while S3 holds the last write of its promotion (the replaced
    version's record, after the pointer and the new record); then the next deploy of it, as a person would retry."""
    _release("current", "current")(env)
    (version, image), previous = env.candidate, env.production[0]
    stall = env.proxy.stall(method="PUT", path=f"/releases/{previous}.json")
    _kill_when_held(env, stall, "killed-deploy.log", _DEPLOY_IN_A_PROCESS, image, version, json.dumps(env.overrides))
    env.proxy.clear()
    settings = env.stack.settings
    pointer = modelstore.read_pointer(env.stack.s3, settings.model_bucket, settings.model_prefix)
    assert pointer is not None and pointer.model_version == version  # the kill left the promotion half-done:
    in_production = {
        v
        for v in (version, previous)
        if (r := releases.read_record(env.stack.s3, settings.model_bucket, v or "")) and r.production
    }
    assert in_production == {version, previous}  # two records say production
    # The dead holder's deploy slot: a real server's repossessor frees it when its lease (deploy_lease_seconds) runs
    # out; the ephemeral test server runs no services, so the test frees it.
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(flows.deploy.DEPLOY_LIMIT, GlobalConcurrencyLimitUpdate(active_slots=0))
    return _deploy(env)


def _the_next_run_finished_the_promotion(env: Env, state: State[Any]) -> None:
    """The next deploy finished the records first (the invariant above: exactly one says production), then
    deployed the same image again; production was promoted once."""
    run_id = state.state_details.flow_run_id
    assert run_id is not None and task_runs(run_id)["finish_promotion"].state_type is StateType.COMPLETED
    record = releases.read_record(env.stack.s3, env.stack.settings.model_bucket, env.candidate[0])
    assert record is not None and len(record.promoted_at) == 1 and not record.promoting
    assert model_version_served(connect_kubeconfig(env.overrides["kubeconfig"]), NS) == env.candidate[0]


def _two_deploys_at_once(env: Env) -> State[Any]:
    """Deploy the candidate and, at the same moment, production's own version again: the global limit `deploy`
    lets one in at a time; the other waits, then goes. The one that promoted last is production."""
    workloads: Workloads = env.notes["workloads"]
    releases_ = [(workloads.current, workloads.current_version), (workloads.previous, workloads.previous_version)]
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(deploy, image, version, overrides=env.overrides, return_state=True)
            for image, version in releases_
        ]
        states: list[State[Any]] = [f.result() for f in futures]
    spans = []
    for state, (image, version) in zip(states, releases_, strict=True):
        assert state.type is StateType.COMPLETED, state.message
        assert state.state_details.flow_run_id is not None
        runs = task_runs(state.state_details.flow_run_id)
        began, ended = runs["set_image"].start_time, runs["promote_model"].end_time
        assert began is not None and ended is not None
        spans.append((began, ended, image, version, state))
    first, second = sorted(spans, key=lambda span: span[0])
    assert first[1] <= second[0], f"the deploys overlapped: {first[:2]} and {second[:2]}"
    env.candidate = (second[3], second[2])
    return second[4]


REAL_POD_CASES = [
    Case(
        "image-cannot-be-pulled",
        _release("missing", "current"),
        _deploy,
        Expect(
            StateType.FAILED,
            message=r"exceeded its progress deadline.*(ErrImagePull|ImagePullBackOff).*Rolled back",
            error=RolloutFailed,
            check=_rolled_back_to_production,
        ),
    ),
    Case(
        "container-crashing-at-start",
        _release("crashing", "current"),
        _deploy,
        Expect(
            StateType.FAILED,
            # the deadline finds the pod waiting to restart, or restarted and not yet up: both say it crashes
            message=r"exceeded its progress deadline.*"
            r"(CrashLoopBackOff|exited with code 1 \(Error\); restarts: [1-9]).*Rolled back",
            error=RolloutFailed,
            check=_rolled_back_to_production,
        ),
    ),
    Case(
        "verification-mismatch",
        _release("current", "previous"),  # the image serves another model than the version says
        _deploy,
        Expect(
            StateType.FAILED,
            message=r"serves model .*, expected.*Rolled back",
            error=RolloutFailed,
            check=_rolled_back_to_production,
        ),
    ),
    Case(
        "kube-api-500-on-the-patch-after-it-landed",
        _patch_reply_lost,
        _deploy,
        Expect(StateType.COMPLETED, runs={"set_image": 2}, production="candidate", check=_served_after_the_retry),
    ),
    Case(
        "s3-failing-after-the-pointer-write",
        _s3_failing_after_the_pointer_write,
        _deploy,
        Expect(StateType.COMPLETED, production="candidate", check=_promoted_and_its_records_finished),
    ),
    Case(
        "process-killed-between-the-record-writes-then-deployed-again",
        lambda env: None,
        _killed_between_the_record_writes_then_deployed_again,
        Expect(StateType.COMPLETED, production="candidate", check=_the_next_run_finished_the_promotion),
    ),
    Case(
        "two-deploys-at-once",
        _release("current", "current"),
        _two_deploys_at_once,
        Expect(StateType.COMPLETED, production="candidate"),
    ),
]


@pytest.mark.parametrize("case", REAL_POD_CASES, ids=str)
def test_cluster_faults_with_real_pods(
    case: Case, stack: Stack, serving: KubeStandIn, workloads: Workloads, docker_client: Any, tmp_path: Path
) -> None:
    overrides = kube_overrides(serving, tmp_path, stack.overrides)
    production = (workloads.previous_version, workloads.previous)
    env = Env(stack, serving, overrides, production, (workloads.current_version, workloads.current))
    env.notes.update(workloads=workloads, docker=docker_client, tmp_path=tmp_path)
    _run_and_check(case, env)
