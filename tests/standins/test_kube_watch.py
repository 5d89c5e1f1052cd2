"""Watch on the Kubernetes API stand-in: list-then-watch from a resourceVersion, as the API server serves it.

Through the official client's `watch.Watch().stream(...)` where it can express the request, and with raw requests
for what it hides (410 as an ERROR event, bookmarks, the chunked stream ending). Scripted containers: no Docker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import watch
from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.models import HISTORY, Write

TOKEN = "watch-token"
IMAGE = "registry.local/web@sha256:" + "1" * 64
NEW_IMAGE = "registry.local/web@sha256:" + "2" * 64
LABELS = {"app": "web"}
BOOKMARK_SECONDS = 0.2


@pytest.fixture(scope="module")
def standin() -> Iterator[KubeStandIn]:
    """One stand-in for the module (each test works in a namespace of its own)."""
    with KubeStandIn(
        TOKEN, runtime=ScriptedRuntime(), step_interval=0.02, bookmark_interval=BOOKMARK_SECONDS
    ) as server:
        yield server


@pytest.fixture(scope="module")
def kubeconfig(standin: KubeStandIn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standin.write_kubeconfig(tmp_path_factory.mktemp("watch") / "kubeconfig.yaml")


@pytest.fixture(scope="module")
def ca_file(standin: KubeStandIn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_bytes(standin.ca_pem)
    return path


@pytest.fixture
def apps(kubeconfig: Path) -> AppsV1Api:
    return AppsV1Api(connect_kubeconfig(str(kubeconfig)))


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A namespace of the test's own."""
    return str(request.node.name).removeprefix("test_").replace("_", "-")[:60].strip("-")


def events(list_call: Callable[..., Any], ns: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The events of a watch through the client (`object`: its model, e.g. `.metadata.name`), for 5 s at most."""
    found: Iterator[dict[str, Any]] = watch.Watch().stream(list_call, ns, timeout_seconds=5, **kwargs)  # type: ignore[no-untyped-call]
    return found


def stream(apps: AppsV1Api, ns: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The Deployment events of a namespace."""
    return events(apps.list_namespaced_deployment, ns, **kwargs)


def raw_lines(standin: KubeStandIn, ca_file: Path, path: str, timeout: float = 5) -> Iterator[dict[str, Any]]:
    """The events of a watch request as sent (a chunked stream of JSON lines)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with requests.get(standin.url + path, headers=headers, verify=str(ca_file), stream=True, timeout=timeout) as answer:
        assert answer.status_code == 200, answer.text
        assert answer.headers["Transfer-Encoding"] == "chunked"
        for line in answer.iter_lines():
            yield json.loads(line)


def test_a_watch_from_the_listed_version_sees_the_change_after_it(
    standin: KubeStandIn, apps: AppsV1Api, ns: str
) -> None:
    standin.add_deployment(ns, "web", LABELS, {"web": IMAGE})
    listed: Any = apps.list_namespaced_deployment(ns)
    version = listed.metadata.resource_version
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": NEW_IMAGE}]}}}}
    apps.patch_namespaced_deployment("web", ns, patch)
    for event in stream(apps, ns, resource_version=version):
        assert event["type"] == "MODIFIED"  # nothing before the listed version comes again
        assert int(event["object"].metadata.resource_version) > int(version)
        if event["object"].spec.template.spec.containers[0].image == NEW_IMAGE:
            assert event["raw_object"]["kind"] == "Deployment" and event["raw_object"]["apiVersion"] == "apps/v1"
            break
    else:
        pytest.fail("the patched image was never seen")


def test_a_watch_without_a_version_starts_with_the_current_objects_then_their_changes(
    standin: KubeStandIn, apps: AppsV1Api, ns: str
) -> None:
    standin.add_deployment(ns, "first", {"app": "first"}, {"web": IMAGE})
    events = stream(apps, ns)
    first = next(events)
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "first")
    standin.add_deployment(ns, "second", {"app": "second"}, {"web": IMAGE}, settle=False)
    second = next(events)
    assert (second["type"], second["object"].metadata.name) == ("ADDED", "second")


def test_selectors_choose_the_objects_and_leaving_a_selector_is_a_deletion(
    standin: KubeStandIn, apps: AppsV1Api, ns: str
) -> None:
    standin.add_deployment(ns, "web", {"app": "web", "tier": "front"}, {"web": IMAGE})
    standin.add_deployment(ns, "api", {"app": "api", "tier": "front"}, {"web": IMAGE})
    by_label = stream(apps, ns, label_selector="tier=front,app=web")
    by_name = stream(apps, ns, field_selector="metadata.name=api")
    assert [e["object"].metadata.name for e in [next(by_label)]] == ["web"]
    assert [e["object"].metadata.name for e in [next(by_name)]] == ["api"]
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"tier": "back"}}})
    gone = next(by_label)
    assert (gone["type"], gone["object"].metadata.name) == ("DELETED", "web")


def test_deleting_a_deployment_is_a_deleted_event_for_it_and_its_replica_sets(
    standin: KubeStandIn, apps: AppsV1Api, ns: str
) -> None:
    standin.add_deployment(ns, "web", LABELS, {"web": IMAGE})
    version = str(apps.list_namespaced_deployment(ns).metadata.resource_version)  # type: ignore[union-attr]
    replica_sets = events(apps.list_namespaced_replica_set, ns, resource_version=version)
    apps.delete_namespaced_deployment("web", ns)
    deleted = next(stream(apps, ns, resource_version=version))
    assert (deleted["type"], deleted["object"].metadata.name) == ("DELETED", "web")
    assert int(deleted["object"].metadata.resource_version) > int(version)
    event = next(replica_sets)
    assert event["type"] == "DELETED" and event["object"].metadata.name.startswith("web-")


def test_pods_are_added_changed_and_deleted(standin: KubeStandIn, kubeconfig: Path, ns: str) -> None:
    core = CoreV1Api(connect_kubeconfig(str(kubeconfig)))
    version = core.list_namespaced_pod(ns).metadata.resource_version  # type: ignore[union-attr]
    standin.add_deployment(ns, "web", LABELS, {"web": IMAGE})
    (pod,) = standin.pods(ns)
    core.delete_namespaced_pod(pod["metadata"]["name"], ns, grace_period_seconds=0)
    seen = []
    for event in events(core.list_namespaced_pod, ns, resource_version=version):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            break
    assert seen[0] == ("ADDED", pod["metadata"]["name"])
    assert ("MODIFIED", pod["metadata"]["name"]) in seen  # its containers started, it became ready
    assert seen[-1] == ("DELETED", pod["metadata"]["name"])


def test_a_version_older_than_the_history_kept_is_410_gone(standin: KubeStandIn, apps: AppsV1Api, ns: str) -> None:
    standin.add_manifest({"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"n": "0"}}, namespace=ns)
    start = apps.list_namespaced_deployment(ns).metadata.resource_version  # type: ignore[union-attr]
    with standin.backend.lock:  # more changes than the history keeps (each patch changes the Secret)
        for n in range(1, HISTORY + 2):
            standin.backend.patch(
                "secrets", ns, "s", "application/merge-patch+json", {"stringData": {"n": str(n)}}, Write()
            )
    with pytest.raises(ApiException) as raised:
        next(stream(apps, ns, resource_version=start))
    assert raised.value.status == 410


def test_410_is_an_error_event_with_an_expired_status(standin: KubeStandIn, ca_file: Path) -> None:
    (event,) = raw_lines(standin, ca_file, "/apis/apps/v1/namespaces/x/deployments?watch=true&resourceVersion=1")
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: 1 (")


def test_bookmarks_carry_only_the_version_and_the_stream_ends_at_its_timeout(
    standin: KubeStandIn, ca_file: Path, ns: str
) -> None:
    path = f"/api/v1/namespaces/{ns}/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion=0"
    started = time.monotonic()
    events = list(raw_lines(standin, ca_file, path))
    assert 1 <= time.monotonic() - started < 3  # ended cleanly (the chunked stream's last chunk) at its timeout
    bookmarks = [e["object"] for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2  # one every BOOKMARK_SECONDS
    assert set(bookmarks[0]) == {"kind", "apiVersion", "metadata"}
    assert (bookmarks[0]["kind"], bookmarks[0]["apiVersion"], list(bookmarks[0]["metadata"])) == (
        "Pod",
        "v1",
        ["resourceVersion"],
    )


def test_the_initial_events_end_with_a_marked_bookmark_when_asked(standin: KubeStandIn, ca_file: Path, ns: str) -> None:
    standin.add_deployment(ns, "web", LABELS, {"web": IMAGE})
    query = "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    events = raw_lines(standin, ca_file, f"/apis/apps/v1/namespaces/{ns}/deployments?{query}&timeoutSeconds=2")
    added, end = next(events), next(events)
    assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "web")
    assert end["type"] == "BOOKMARK"
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_a_bad_selector_is_a_400_before_any_stream(standin: KubeStandIn, ca_file: Path) -> None:
    answer = requests.get(
        standin.url + "/api/v1/namespaces/x/secrets?watch=true&fieldSelector=spec.nothing%3Dx",
        headers={"Authorization": f"Bearer {TOKEN}"},
        verify=str(ca_file),
        timeout=5,
    )
    assert answer.status_code == 400 and "field label not supported" in answer.json()["message"]


def test_stopping_the_stand_in_ends_open_watches_at_once(tmp_path: Path) -> None:
    server = KubeStandIn(TOKEN, runtime=ScriptedRuntime(), step_interval=0.02).start()
    ca = tmp_path / "ca.crt"
    ca.write_bytes(server.ca_pem)
    opened, ended = threading.Event(), threading.Event()

    def watching() -> None:
        path = "/apis/apps/v1/deployments?watch=true&timeoutSeconds=60"
        with requests.get(
            server.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, verify=str(ca), stream=True, timeout=30
        ) as answer:
            opened.set()
            for _ in answer.iter_lines():
                pass
        ended.set()

    reader = threading.Thread(target=watching, daemon=True)
    reader.start()
    assert opened.wait(5)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert ended.wait(2)  # the stream was ended (not left hanging until its timeout)
