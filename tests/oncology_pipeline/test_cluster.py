"""The deploy stage through the official kubernetes client, against the Kubernetes API stand-in.

The stand-in (standins/kube) speaks the apps/v1 REST protocol and runs the deployment controller; here its
containers are scripted (tests/flows/test_deploy.py runs real ones). The client reaches it through a
kubeconfig file, the same path real users take.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, AppsV1Api, V1Deployment
from kubernetes.client.exceptions import ApiException

from oncology_pipeline import cluster
from oncology_pipeline.cluster import (
    STRATEGIC_MERGE_PATCH,
    WEBSERVICE_CONTAINER,
    ImageChange,
    Restore,
    is_pinned,
    pin_image,
    rollback,
    set_image,
    webservice_selector,
)
from oncology_pipeline.errors import (
    ClusterError,
    ConfigurationError,
    RolloutFailed,
    TransientError,
    VerificationFailed,
    is_transient,
)
from oncology_pipeline.kubeapi import (
    api_error,
    connect_in_cluster,
    connect_kubeconfig,
    list_deployments,
    read_deployment,
)
from oncology_pipeline.releases import ANNOTATION_VERSION
from oncology_pipeline.rolloutstatus import rollout_status, wait_for_rollout
from oncology_pipeline.verification import served_versions
from standins.kube import KubeStandIn, ScriptedRuntime
from tests.support.moto_server import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"
NS = "oncology"
TEAM = "ml-platform"
SELECTOR = webservice_selector(TEAM)
CONTAINER = WEBSERVICE_CONTAINER
OLD = "registry.local/oncology-webservice@sha256:" + "a" * 64
NEW = "registry.local/oncology-webservice@sha256:" + "b" * 64
THIRD = "registry.local/oncology-webservice@sha256:" + "c" * 64
POLL = 0.02
TIMEOUT = 5.0
RT = 5.0  # request timeout: how long one API call may wait for the stand-in
LABELS = {"app": "oncology-webservice", "team": TEAM}


@pytest.fixture
def runtime() -> ScriptedRuntime:
    """Containers whose outcomes the test chooses."""
    return ScriptedRuntime()


@pytest.fixture
def standin(runtime: ScriptedRuntime) -> Iterator[KubeStandIn]:
    """A fresh API stand-in per test: fast controller steps, a short progress deadline."""
    with KubeStandIn(TOKEN, runtime=runtime, step_interval=0.02, progress_deadline=0.4) as server:
        yield server


@pytest.fixture
def apps(standin: KubeStandIn, tmp_path: Path) -> AppsV1Api:
    """AppsV1Api connected through a kubeconfig file pointing at the stand-in."""
    kubeconfig = standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    return AppsV1Api(connect_kubeconfig(str(kubeconfig), "kube-standin"))


@pytest.fixture
def seeded(standin: KubeStandIn) -> KubeStandIn:
    """Two matching Deployments, one of another team, one in another namespace; all run OLD."""
    created = [
        standin.add_deployment(NS, "oncology-webservice", LABELS, {CONTAINER: OLD}, replicas=2, settle=False),
        standin.add_deployment(
            NS, "oncology-webservice-canary", {**LABELS, "track": "canary"}, {CONTAINER: OLD}, settle=False
        ),
        standin.add_deployment(NS, "other-team", {**LABELS, "team": "other"}, {CONTAINER: OLD}, settle=False),
        standin.add_deployment("elsewhere", "oncology-webservice", LABELS, {CONTAINER: OLD}, settle=False),
    ]
    # They roll out side by side: one wait instead of four in a row.
    names = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in created]
    assert standin.wait_until(lambda: all(standin.controller.complete(ns, name) for ns, name in names))
    return standin


def image_of(standin: KubeStandIn, name: str, namespace: str = NS, container: str = CONTAINER) -> str:
    containers = standin.deployment(namespace, name)["spec"]["template"]["spec"]["containers"]
    image: str = next(c["image"] for c in containers if c["name"] == container)
    return image


def assert_rolled_out(standin: KubeStandIn, name: str, image: str) -> None:
    """Spec and status agree: every replica runs `image` and is available."""
    deployment = standin.deployment(NS, name)
    status, replicas = deployment["status"], deployment["spec"]["replicas"]
    assert image_of(standin, name) == image
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert status["replicas"] == status["updatedReplicas"] == status["availableReplicas"] == replicas
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    active = [rs for rs in standin.replicasets(NS, name) if rs["spec"]["replicas"]]
    assert [c["image"] for rs in active for c in rs["spec"]["template"]["spec"]["containers"]] == [image]


def deploy_image(
    apps: AppsV1Api,
    namespace: str,
    selector: str,
    container: str,
    image: str,
    *,
    timeout: float,
    poll: float,
    log: Callable[[str], None] = lambda _: None,
) -> list[ImageChange]:
    """What the deploy flow does with these functions: set the image, wait, and on failure put the old one back."""
    changes = set_image(apps, namespace, selector, container, image, request_timeout=RT)
    try:
        wait_for_rollout(apps, namespace, [c.deployment for c in changes], timeout, poll, log, request_timeout=RT)
    except RolloutFailed as failure:
        restored = rollback(
            apps, namespace, changes, container, timeout=timeout, poll=poll, log=log, request_timeout=RT
        )
        back = ", ".join(f"{c.deployment} runs {c.new_image} again" for c in restored)
        raise RolloutFailed(f"{failure} Rolled back: {back}.") from failure
    return changes


# --- success ------------------------------------------------------------------------------------------


def test_deploy_patches_every_matching_deployment_and_waits(
    seeded: KubeStandIn, apps: AppsV1Api, runtime: ScriptedRuntime
) -> None:
    runtime.pull_seconds = 0.2  # new pods take 0.2 s to get ready: the wait sees the rollout in progress
    logs: list[str] = []
    changes = deploy_image(apps, NS, SELECTOR, CONTAINER, NEW, timeout=TIMEOUT, poll=POLL, log=logs.append)

    assert changes == [
        ImageChange("oncology-webservice", OLD, NEW, 2),
        ImageChange("oncology-webservice-canary", OLD, NEW, 2),
    ]
    assert_rolled_out(seeded, "oncology-webservice", NEW)
    assert_rolled_out(seeded, "oncology-webservice-canary", NEW)
    assert image_of(seeded, "other-team") == OLD
    assert image_of(seeded, "oncology-webservice", namespace="elsewhere") == OLD
    assert seeded.deployment(NS, "other-team")["metadata"]["generation"] == 1
    assert 'deployment "oncology-webservice" successfully rolled out' in logs
    assert 'deployment "oncology-webservice-canary" successfully rolled out' in logs
    assert any(line.startswith('Waiting for deployment "oncology-webservice" rollout to finish') for line in logs), logs
    history = seeded.replicasets(NS, "oncology-webservice")
    assert [rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in history] == ["1", "2"]
    assert [rs["spec"]["replicas"] for rs in history] == [0, 2]


def test_set_image_merges_by_container_name_and_keeps_the_sidecar(standin: KubeStandIn, apps: AppsV1Api) -> None:
    containers: list[dict[str, Any]] = [
        {"name": "log-shipper", "image": "fluent-bit:3.1"},
        {"name": CONTAINER, "image": OLD, "ports": [{"containerPort": 8000}]},
    ]
    standin.add_deployment(NS, "oncology-webservice", LABELS, containers)

    set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)

    patched = standin.deployment(NS, "oncology-webservice")["spec"]["template"]["spec"]["containers"]
    assert patched == [
        {"name": "log-shipper", "image": "fluent-bit:3.1"},
        {"name": CONTAINER, "image": NEW, "ports": [{"containerPort": 8000}]},
    ]


def test_the_manifest_in_deployments_can_be_deployed(standin: KubeStandIn, apps: AppsV1Api) -> None:
    documents = list(yaml.safe_load_all((PROJECT_DIR / "deployments" / "webservice.yaml").read_text()))
    manifest = next(doc for doc in documents if doc["kind"] == "Deployment")
    standin.add_manifest(manifest, namespace=NS)

    deploy_image(apps, NS, webservice_selector(TEAM), WEBSERVICE_CONTAINER, NEW, timeout=TIMEOUT, poll=POLL)

    assert_rolled_out(standin, "oncology-webservice", NEW)
    pod_spec = standin.deployment(NS, "oncology-webservice")["spec"]["template"]["spec"]
    assert pod_spec["volumes"] == manifest["spec"]["template"]["spec"]["volumes"]
    assert pod_spec["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"


# --- refusals before anything changes ---------------------------------------------------------------


def test_no_matching_deployment_names_selector_and_namespace(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    with pytest.raises(
        ClusterError, match=r"namespace 'oncology' matches the selector 'app=oncology-webservice,team=nobody'"
    ):
        set_image(apps, NS, webservice_selector("nobody"), CONTAINER, NEW, request_timeout=RT)
    assert seeded.requests_made("PATCH") == []


def test_a_deployment_without_the_container_stops_everything(standin: KubeStandIn, apps: AppsV1Api) -> None:
    standin.add_deployment(NS, "oncology-webservice", LABELS, {CONTAINER: OLD})
    standin.add_deployment(NS, "oncology-webservice-legacy", LABELS, {"web": OLD})

    with pytest.raises(ClusterError, match=r"oncology-webservice-legacy \(has: web\)") as info:
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)

    assert "Nothing was changed" in str(info.value)
    assert standin.requests_made("PATCH") == []
    assert image_of(standin, "oncology-webservice") == OLD


def test_an_image_not_pinned_by_digest_is_refused(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    with pytest.raises(ConfigurationError, match="not pinned by digest"):
        set_image(apps, NS, SELECTOR, CONTAINER, "registry.local/oncology-webservice:latest", request_timeout=RT)
    assert seeded.requests_made("GET") == []


# --- failed rollouts ----------------------------------------------------------------------------------


def test_a_rollout_past_its_deadline_is_rolled_back(
    seeded: KubeStandIn, apps: AppsV1Api, runtime: ScriptedRuntime
) -> None:
    runtime.unpullable.add(NEW)
    logs: list[str] = []

    with pytest.raises(RolloutFailed) as info:
        deploy_image(apps, NS, SELECTOR, CONTAINER, NEW, timeout=TIMEOUT, poll=POLL, log=logs.append)

    message = str(info.value)
    assert "exceeded its progress deadline" in message
    assert "has timed out progressing" in message
    assert f"Rolled back: oncology-webservice runs {OLD} again" in message
    for name in ("oncology-webservice", "oncology-webservice-canary"):
        assert_rolled_out(seeded, name, OLD)
        assert seeded.deployment(NS, name)["metadata"]["generation"] == 3
    history = seeded.replicasets(NS, "oncology-webservice")
    # The old ReplicaSet came back as the newest revision; the broken one is scaled to zero.
    assert [
        (rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"], rs["spec"]["replicas"]) for rs in history
    ] == [
        ("2", 0),
        ("3", 2),
    ]
    assert f'deployment "oncology-webservice" image put back to {OLD}' in logs


def test_a_hanging_rollout_times_out_and_is_rolled_back(
    seeded: KubeStandIn, apps: AppsV1Api, runtime: ScriptedRuntime
) -> None:
    runtime.unpullable.add(NEW)
    seeded.controller.progress_deadline = None  # the spec's 600 s: our own timeout comes first

    with pytest.raises(RolloutFailed, match=r"did not finish within 0\.8 s: .*new replicas have been updated") as info:
        deploy_image(apps, NS, SELECTOR, CONTAINER, NEW, timeout=0.8, poll=POLL)

    assert "Rolled back" in str(info.value)
    for name in ("oncology-webservice", "oncology-webservice-canary"):
        assert_rolled_out(seeded, name, OLD)
    conditions = seeded.deployment(NS, "oncology-webservice")["status"]["conditions"]
    assert all(c["reason"] != "ProgressDeadlineExceeded" for c in conditions)


def test_the_image_and_its_environment_land_in_one_patch_merged_by_name(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    first = {"ONCOLOGY_IMAGE_DIGEST": NEW.rpartition("@")[2], "ONCOLOGY_IMAGE_MODEL_VERSION": "v2"}
    generations = {
        c.deployment: c.generation for c in set_image(apps, NS, SELECTOR, CONTAINER, NEW, env=first, request_timeout=RT)
    }
    second = {"ONCOLOGY_IMAGE_DIGEST": THIRD.rpartition("@")[2], "ONCOLOGY_IMAGE_MODEL_VERSION": "v3"}
    set_image(apps, NS, SELECTOR, CONTAINER, THIRD, env=second, request_timeout=RT)
    for name, generation in generations.items():
        deployment = seeded.deployment(NS, name)
        (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == CONTAINER]
        assert container["image"] == THIRD
        set_here = [e for e in container.get("env", []) if e["name"] in second]
        assert set_here == [{"name": k, "value": v} for k, v in second.items()]  # replaced, never appended
        assert deployment["metadata"]["generation"] == generation + 1  # one patch, one generation each time


def test_a_rollback_puts_the_variables_back_so_the_pod_template_is_the_one_before(
    seeded: KubeStandIn, apps: AppsV1Api
) -> None:
    def template(name: str) -> Any:
        return seeded.deployment(NS, name)["spec"]["template"]

    before = {name: template(name) for name in ("oncology-webservice", "oncology-webservice-canary")}
    first = {"ONCOLOGY_IMAGE_DIGEST": NEW.rpartition("@")[2], "ONCOLOGY_IMAGE_MODEL_VERSION": "v2"}
    changes = set_image(apps, NS, SELECTOR, CONTAINER, NEW, env=first, request_timeout=RT)
    assert all(template(name) != t for name, t in before.items())
    rollback(apps, NS, changes, CONTAINER, timeout=TIMEOUT, poll=POLL, request_timeout=RT)
    assert {name: template(name) for name in before} == before  # no variable left behind: the old ReplicaSet fits

    set_image(apps, NS, SELECTOR, CONTAINER, NEW, env=first, request_timeout=RT)
    middle = {name: template(name) for name in before}
    second = {"ONCOLOGY_IMAGE_DIGEST": THIRD.rpartition("@")[2], "ONCOLOGY_IMAGE_MODEL_VERSION": "v3"}
    changes = set_image(apps, NS, SELECTOR, CONTAINER, THIRD, env=second, request_timeout=RT)
    rollback(apps, NS, changes, CONTAINER, timeout=TIMEOUT, poll=POLL, request_timeout=RT)
    assert {name: template(name) for name in before} == middle


def test_rollback_leaves_alone_a_deployment_someone_else_changed(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    changes = set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)
    someone_else = {"spec": {"template": {"spec": {"containers": [{"name": CONTAINER, "image": THIRD}]}}}}
    apps.patch_namespaced_deployment("oncology-webservice-canary", NS, someone_else)
    logs: list[str] = []

    restored = rollback(apps, NS, changes, CONTAINER, timeout=TIMEOUT, poll=POLL, log=logs.append, request_timeout=RT)

    assert [(c.deployment, c.new_image) for c in restored] == [("oncology-webservice", OLD)]
    assert_rolled_out(seeded, "oncology-webservice", OLD)
    assert image_of(seeded, "oncology-webservice-canary") == THIRD
    assert f'deployment "oncology-webservice-canary" no longer runs {NEW}: left alone' in logs


def test_a_failed_rollout_restores_productions_recorded_image_not_what_ran(
    seeded: KubeStandIn, apps: AppsV1Api, runtime: ScriptedRuntime
) -> None:
    runtime.unpullable.add(NEW)
    by_hand = {"spec": {"template": {"spec": {"containers": [{"name": CONTAINER, "image": THIRD}]}}}}
    apps.patch_namespaced_deployment("oncology-webservice", NS, by_hand)  # someone's `kubectl set image`
    production = Restore(OLD, {ANNOTATION_VERSION: "v1"})

    changes = set_image(apps, NS, SELECTOR, CONTAINER, NEW, {ANNOTATION_VERSION: "v2"}, production, request_timeout=RT)
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline"):
        wait_for_rollout(apps, NS, [c.deployment for c in changes], TIMEOUT, POLL, lambda _: None, request_timeout=RT)
    rollback(apps, NS, changes, CONTAINER, timeout=TIMEOUT, poll=POLL, request_timeout=RT)

    assert [(c.deployment, c.previous_image) for c in changes] == [
        ("oncology-webservice", OLD),
        ("oncology-webservice-canary", OLD),
    ]
    for name in ("oncology-webservice", "oncology-webservice-canary"):
        assert_rolled_out(seeded, name, OLD)  # not THIRD, which nobody verified
        assert seeded.deployment(NS, name)["metadata"]["annotations"][ANNOTATION_VERSION] == "v1"


# --- the API failing ----------------------------------------------------------------------------------


def test_a_server_error_half_way_leaves_no_deployment_patched(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    seeded.fail_requests("PATCH", 1, status=500, after=1)  # the first patch passes, the second fails

    with pytest.raises(TransientError) as info:
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)

    assert is_transient(info.value)
    assert "HTTP 500" in str(info.value)
    assert str(info.value).endswith("The previous image is back on: oncology-webservice.")
    assert len(seeded.requests_made("PATCH")) == 3  # patch, failed patch, restore
    assert image_of(seeded, "oncology-webservice") == OLD
    assert seeded.deployment(NS, "oncology-webservice")["metadata"]["generation"] == 3  # patched, then put back
    assert image_of(seeded, "oncology-webservice-canary") == OLD
    # A retry starts from a clean state and completes.
    assert [c.previous_image for c in set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)] == [OLD, OLD]


def test_a_patch_that_landed_despite_its_error_is_undone_too(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    seeded.fail_requests("PATCH", 1, status=504, after=1, applied=True)  # the second patch lands, its reply fails

    with pytest.raises(TransientError, match="HTTP 504") as info:
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)

    assert str(info.value).endswith("The previous image is back on: oncology-webservice, oncology-webservice-canary.")
    assert image_of(seeded, "oncology-webservice") == OLD
    assert image_of(seeded, "oncology-webservice-canary") == OLD
    assert seeded.deployment(NS, "oncology-webservice-canary")["metadata"]["generation"] == 3


def test_a_restore_that_fails_too_says_what_to_do_by_hand(
    seeded: KubeStandIn, apps: AppsV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "_RESTORE_BACKOFF", 0.01)
    seeded.fail_requests("PATCH", 10, status=503, after=1)

    with pytest.raises(ClusterError) as info:  # not transient: a retry would take NEW for the previous image
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)

    assert not is_transient(info.value)
    assert "COULD NOT restore: oncology-webservice" in str(info.value)
    assert f"kubectl -n {NS} set image deployment/oncology-webservice {CONTAINER}={OLD}" in str(info.value)


def test_a_wrong_token_is_a_configuration_error(seeded: KubeStandIn, tmp_path: Path) -> None:
    kubeconfig = seeded.write_kubeconfig(tmp_path / "wrong.yaml", token="not-the-token")
    apps = AppsV1Api(connect_kubeconfig(str(kubeconfig)))

    with pytest.raises(ConfigurationError, match=r"HTTP 401: Unauthorized\. The credentials were not accepted") as info:
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)

    assert not is_transient(info.value)
    assert seeded.requests_made("PATCH") == []


def test_forbidden_is_a_configuration_error_naming_the_permission(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    seeded.fail_requests("GET", 1, status=403)
    with pytest.raises(ConfigurationError, match=r"grant get, list and patch on deployments\.apps"):
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)


def connect_to(server: str, kubeconfig: Path) -> ApiClient:
    """A client for the API server at `server`, through a kubeconfig file as users connect."""
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return connect_kubeconfig(str(kubeconfig))


def test_an_unreachable_api_is_transient(tmp_path: Path) -> None:
    apps = AppsV1Api(connect_to(f"http://127.0.0.1:{free_port()}", tmp_path / "nowhere.yaml"))
    with pytest.raises(TransientError, match="Cannot reach the Kubernetes API to list deployments"):
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """An API server that accepts connections and never answers (a hung one): its URL and the connections made."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # held open, never answered
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for connection in [*accepted, listener]:
        connection.close()


HUNG = 0.4  # the request timeout against the silent server


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda api: list_deployments(AppsV1Api(api), NS, SELECTOR, request_timeout=HUNG), TransientError),
        (lambda api: read_deployment(AppsV1Api(api), NS, "web", request_timeout=HUNG), TransientError),
        (lambda api: served_versions(api, NS, "web:http", attempts=1, request_timeout=HUNG), VerificationFailed),
    ],
    ids=["list", "read", "service-proxy"],
)
def test_a_hung_api_server_fails_a_call_within_its_request_timeout_sent_once(
    silent_server: tuple[str, list[socket.socket]],
    tmp_path: Path,
    call: Callable[[ApiClient], object],
    error: type[Exception],
) -> None:
    url, connections = silent_server
    api = connect_to(url, tmp_path / "hung.yaml")
    start = time.monotonic()

    with pytest.raises(error, match=r"[Rr]ead timed out"):
        call(api)

    # Within the timeout (plus scheduling slack), not the four timeouts urllib3's default retries would wait.
    assert HUNG <= time.monotonic() - start < 3 * HUNG
    assert len(connections) == 1


def test_server_errors_while_watching_are_polled_through(seeded: KubeStandIn, apps: AppsV1Api) -> None:
    set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)
    seeded.fail_requests("GET", 3, status=503, path_contains="/deployments/oncology-webservice")
    logs: list[str] = []

    wait_for_rollout(apps, NS, ["oncology-webservice"], TIMEOUT, POLL, logs.append, request_timeout=RT)

    assert any("HTTP 503" in line and "still waiting" in line for line in logs)
    assert_rolled_out(seeded, "oncology-webservice", NEW)


# --- interruptions: a BaseException during set_image, a cancellation during a rollback --------------------


def annotate(apps: AppsV1Api, version: str) -> None:
    """Say on both matching Deployments that they serve `version` (as a release does)."""
    for name in ("oncology-webservice", "oncology-webservice-canary"):
        apps.patch_namespaced_deployment(name, NS, {"metadata": {"annotations": {ANNOTATION_VERSION: version}}})


def interrupt_patch(
    monkeypatch: pytest.MonkeyPatch, apps: AppsV1Api, number: int, interruption: BaseException, *, landed: bool
) -> list[str]:
    """Raise `interruption` in set_image's `number`-th patch, after it took effect (`landed`) or before it was sent;
    the other calls go through. Returns the names patched, in order."""
    real = apps.patch_namespaced_deployment
    patched: list[str] = []

    def patch(name: str, namespace: str, body: Any, **options: Any) -> Any:
        if options.get("_content_type") == STRATEGIC_MERGE_PATCH:
            patched.append(name)
            if len(patched) == number:
                if landed:
                    real(name, namespace, body, **options)
                raise interruption
        return real(name, namespace, body, **options)

    monkeypatch.setattr(apps, "patch_namespaced_deployment", patch)
    return patched


def assert_as_before(standin: KubeStandIn, version: str) -> None:
    """Both matching Deployments run OLD and say they serve `version`; the other team's was never touched."""
    for name in ("oncology-webservice", "oncology-webservice-canary"):
        assert image_of(standin, name) == OLD
        assert standin.deployment(NS, name)["metadata"]["annotations"][ANNOTATION_VERSION] == version
    assert standin.deployment(NS, "other-team")["metadata"]["generation"] == 1


@pytest.mark.parametrize("landed", [False, True], ids=["before-it-was-sent", "after-it-landed"])
@pytest.mark.parametrize("kind", ["prefect-cancellation", "ctrl-c"])
def test_an_interruption_during_the_second_patch_leaves_both_deployments_as_they_were(
    seeded: KubeStandIn, apps: AppsV1Api, monkeypatch: pytest.MonkeyPatch, kind: str, landed: bool
) -> None:
    from prefect._internal.concurrency.cancellation import CancelledError  # what a timeout or lost lease raises

    annotate(apps, "v1")
    interruption = CancelledError() if kind == "prefect-cancellation" else KeyboardInterrupt()
    patched = interrupt_patch(monkeypatch, apps, 2, interruption, landed=landed)

    with pytest.raises(type(interruption)) as info:  # raised as it is, not turned into an error of ours
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, {ANNOTATION_VERSION: "v2"}, request_timeout=RT)

    assert info.value is interruption
    assert patched == ["oncology-webservice", "oncology-webservice-canary"]
    back = "oncology-webservice, oncology-webservice-canary" if landed else "oncology-webservice"
    assert info.value.__notes__ == [f"set_image was interrupted: The previous image is back on: {back}."]
    assert_as_before(seeded, "v1")


def test_a_timeout_between_the_patches_is_undone_before_it_goes_on(
    seeded: KubeStandIn, apps: AppsV1Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's own timeout (the one a flow runs under) lands while the second patch is on its way."""
    from prefect.utilities.timeout import timeout

    from tasks.deploy import shielded

    annotate(apps, "v1")
    real = apps.patch_namespaced_deployment

    def slow_second_patch(name: str, namespace: str, body: Any, **options: Any) -> Any:
        if name == "oncology-webservice-canary" and options.get("_content_type") == STRATEGIC_MERGE_PATCH:
            time.sleep(0.6)  # the timeout lands here
        return real(name, namespace, body, **options)

    monkeypatch.setattr(apps, "patch_namespaced_deployment", slow_second_patch)
    with pytest.raises(TimeoutError), timeout(0.3):
        set_image(apps, NS, SELECTOR, CONTAINER, NEW, {ANNOTATION_VERSION: "v2"}, request_timeout=RT, protect=shielded)

    assert_as_before(seeded, "v1")


#: How long the rollback's image pull takes in the cancellation test: the cancellation lands after 0.2 s, and the
#: unshielded control must see the rollback cut short well before the pull is done, even on a loaded machine.
ROLLBACK_PULL_SECONDS = 1.5


def _scope(kind: str, seconds: float) -> AbstractContextManager[object]:
    """Prefect 3.9's two ways of delivering a synchronous flow's timeout (or a lost lease): SIGALRM in the main
    thread, else an exception injected into the flow's thread by a watcher thread."""
    from prefect._internal.concurrency.cancellation import AlarmCancelScope, WatcherThreadCancelScope

    if kind == "alarm":
        assert threading.current_thread() is threading.main_thread(), "an alarm reaches the main thread only"
        return AlarmCancelScope(timeout=seconds)
    return WatcherThreadCancelScope(timeout=seconds)


@pytest.mark.parametrize("shielded", [True, False], ids=["shielded", "unshielded"])
@pytest.mark.parametrize("delivery", ["alarm", "watcher"])
def test_a_cancellation_during_a_rollback_waits_until_the_rollback_is_done(
    seeded: KubeStandIn, apps: AppsV1Api, runtime: ScriptedRuntime, delivery: str, shielded: bool
) -> None:
    """A cancellation that arrives while a rollback runs (the stage's timeout after a failed step, a lost lease, the
    pipeline's timeout) is held until the rollback has rolled out; without the shield it would cut it short."""
    from prefect._internal.concurrency.cancellation import CancelledError

    from tasks.deploy import shielded as shield

    changes = set_image(apps, NS, SELECTOR, CONTAINER, NEW, request_timeout=RT)
    wait_for_rollout(apps, NS, [c.deployment for c in changes], TIMEOUT, POLL, request_timeout=RT)
    runtime.present.discard(OLD)  # putting OLD back pulls it again: the rollback's rollout takes ROLLBACK_PULL_SECONDS
    runtime.pull_seconds = ROLLBACK_PULL_SECONDS
    seeded.controller.progress_deadline = None  # the spec's 600 s, not the fixture's 0.4 s
    protect = shield if shielded else nullcontext
    start = time.monotonic()

    with pytest.raises(CancelledError), _scope(delivery, 0.2):
        rollback(apps, NS, changes, CONTAINER, timeout=TIMEOUT, poll=POLL, request_timeout=RT, protect=protect)
        for _ in range(100):  # the flow goes on; a watcher thread delivers the held cancellation here
            time.sleep(0.01)

    names = ("oncology-webservice", "oncology-webservice-canary")
    if shielded:
        assert time.monotonic() - start >= ROLLBACK_PULL_SECONDS
        for name in names:
            assert_rolled_out(seeded, name, OLD)
    else:  # the control: cut short mid-rollout
        assert time.monotonic() - start < ROLLBACK_PULL_SECONDS
        assert not all(seeded.controller.complete(NS, name) for name in names)


# --- configuration ------------------------------------------------------------------------------------


def test_a_missing_kubeconfig_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Cannot load the Kubernetes configuration"):
        connect_kubeconfig(str(tmp_path / "absent.yaml"))


def test_an_unknown_context_is_a_configuration_error(standin: KubeStandIn, tmp_path: Path) -> None:
    kubeconfig = standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    with pytest.raises(ConfigurationError, match="context: prod"):
        connect_kubeconfig(str(kubeconfig), "prod")


def test_in_cluster_configuration_outside_a_pod_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigurationError, match="Not running in a Kubernetes pod"):
        connect_in_cluster()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, ConfigurationError),
        (403, ConfigurationError),
        (404, ClusterError),
        (409, ClusterError),
        (422, ClusterError),
        (429, TransientError),
        (500, TransientError),
        (503, TransientError),
    ],
)
def test_api_errors_are_classified(status: int, expected: type[Exception]) -> None:
    exc = ApiException(status=status, reason="Reason")
    exc.body = '{"kind": "Status", "message": "deployments.apps \\"x\\" is what it is"}'
    error = api_error(exc, "patch deployment 'x'")
    assert type(error) is expected
    assert f"refused to patch deployment 'x': HTTP {status}: deployments.apps \"x\" is what it is" in str(error)


# --- images -------------------------------------------------------------------------------------------


def test_pin_image_drops_the_tag_and_keeps_the_registry_port() -> None:
    digest = "sha256:" + "d" * 64
    assert pin_image("localhost:5000/team/oncology-webservice:1.2.0", digest) == (
        f"localhost:5000/team/oncology-webservice@{digest}"
    )
    assert pin_image("123456789012.dkr.ecr.eu-central-1.amazonaws.com/oncology", digest).endswith(f"oncology@{digest}")


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 64, "sha256:" + "G" * 64, "b" * 64])
def test_pin_image_refuses_a_malformed_digest(digest: str) -> None:
    with pytest.raises(ConfigurationError, match="is not sha256:<64 hex>"):
        pin_image("registry.local/oncology-webservice", digest)


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        (OLD, True),
        ("localhost:5000/repo:tag@sha256:" + "e" * 64, True),
        ("registry.local/oncology-webservice:latest", False),
        ("registry.local/oncology-webservice@sha256:" + "e" * 63, False),
        ("@sha256:" + "e" * 64, False),
    ],
)
def test_is_pinned(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


# --- kubectl's rollout rule ---------------------------------------------------------------------------


def deployment(
    *,
    generation: int = 2,
    replicas: int | None = 3,
    status: dict[str, Any] | None = None,
    reason: str = "ReplicaSetUpdated",
) -> V1Deployment:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    full_status = {"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "True", "reason": reason}]}
    full_status |= status or {}
    built = V1Deployment.from_dict(
        {"metadata": {"name": "web", "generation": generation}, "spec": spec, "status": full_status}
    )
    assert built is not None
    return built


@pytest.mark.parametrize(
    ("subject", "done", "failed", "message"),
    [
        (deployment(generation=3), False, False, "Waiting for deployment spec update to be observed..."),
        (
            deployment(reason="ProgressDeadlineExceeded", status={"updatedReplicas": 1}),
            False,
            True,
            'deployment "web" exceeded its progress deadline',
        ),
        (
            deployment(status={"updatedReplicas": 1, "replicas": 4, "availableReplicas": 3}),
            False,
            False,
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
        ),
        (
            deployment(status={"updatedReplicas": 3, "replicas": 4, "availableReplicas": 3}),
            False,
            False,
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
        ),
        (
            deployment(status={"updatedReplicas": 3, "replicas": 3, "availableReplicas": 2}),
            False,
            False,
            'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
        ),
        (
            deployment(status={}),  # counts omitted (omitempty) read as 0
            False,
            False,
            'Waiting for deployment "web" rollout to finish: 0 out of 3 new replicas have been updated...',
        ),
        (
            deployment(
                status={"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}, reason="NewReplicaSetAvailable"
            ),
            True,
            False,
            'deployment "web" successfully rolled out',
        ),
        (
            deployment(replicas=None, status={"updatedReplicas": 1, "replicas": 1, "availableReplicas": 1}),
            True,
            False,
            'deployment "web" successfully rolled out',
        ),
    ],
)
def test_rollout_status_follows_kubectl(subject: V1Deployment, done: bool, failed: bool, message: str) -> None:
    state = rollout_status(subject)
    assert (state.deployment, state.done, state.failed) == ("web", done, failed)
    assert state.message.startswith(message)
