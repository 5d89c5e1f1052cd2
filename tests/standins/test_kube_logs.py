"""`kubectl logs`: a container's output, the previous instance's after a restart, and the options kubectl sends.

Through the official client, with scripted containers whose output the test gives (`ScriptedRuntime.output`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.kubeapi import connect_kubeconfig
from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.exceptions import ApiError
from standins.kube.logs import LogOptions

NS = "logged"
TALKING = "registry.local/talking:1"
CRASHING = "registry.local/crash:1"
UNPULLABLE = "registry.local/absent:1"
OUTPUT = ["starting attempt {attempt}", "loading the model", "serving on :8000"]


@pytest.fixture(scope="module")
def runtime() -> ScriptedRuntime:
    output = {TALKING: OUTPUT, CRASHING: ["starting attempt {attempt}"]}
    return ScriptedRuntime(crashing={CRASHING}, unpullable={UNPULLABLE}, output=output)


@pytest.fixture(scope="module")
def standin(runtime: ScriptedRuntime) -> Iterator[KubeStandIn]:
    with KubeStandIn("logs-token", runtime=runtime, step_interval=0.02, backoff=0.05) as server:
        server.add_deployment(NS, "talking", {"app": "talking"}, {"web": TALKING})
        server.add_deployment(NS, "pair", {"app": "pair"}, {"web": TALKING, "sidecar": TALKING})
        server.add_deployment(NS, "crashing", {"app": "crashing"}, {"crash": CRASHING}, settle=False)
        server.add_deployment(NS, "absent", {"app": "absent"}, {"absent": UNPULLABLE}, settle=False)
        yield server


@pytest.fixture(scope="module")
def core(standin: KubeStandIn, tmp_path_factory: pytest.TempPathFactory) -> CoreV1Api:
    return CoreV1Api(connect_kubeconfig(str(standin.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig"))))


def pod_of(standin: KubeStandIn, app: str) -> str:
    assert standin.wait_until(lambda: bool(standin.pods(NS, f"app={app}")))
    name: str = standin.pods(NS, f"app={app}")[0]["metadata"]["name"]
    return name


def refusal(call: Any) -> tuple[int, str]:
    """The status and message of a refused request."""
    with pytest.raises(ApiException) as info:
        call()
    return info.value.status, json.loads(info.value.body or "{}")["message"]


def test_the_log_is_what_the_container_wrote(standin: KubeStandIn, core: CoreV1Api) -> None:
    name = pod_of(standin, "talking")
    assert core.read_namespaced_pod_log(name, NS) == "starting attempt 0\nloading the model\nserving on :8000\n"
    assert core.read_namespaced_pod_log(name, NS, container="web", tail_lines=1) == "serving on :8000\n"
    assert core.read_namespaced_pod_log(name, NS, tail_lines=0) == ""
    assert core.read_namespaced_pod_log(name, NS, limit_bytes=8) == "starting"
    stamped = core.read_namespaced_pod_log(name, NS, timestamps=True, since_seconds=3600).splitlines()
    assert len(stamped) == 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z .+", line) for line in stamped)


def test_a_pod_of_several_containers_needs_the_container_named(standin: KubeStandIn, core: CoreV1Api) -> None:
    name = pod_of(standin, "pair")
    assert refusal(lambda: core.read_namespaced_pod_log(name, NS)) == (
        400,
        f"a container name must be specified for pod {name}, choose one of: [web sidecar]",
    )
    assert refusal(lambda: core.read_namespaced_pod_log(name, NS, container="db")) == (
        400,
        f"container db is not valid for pod {name}",
    )
    assert core.read_namespaced_pod_log(name, NS, container="sidecar").endswith("serving on :8000\n")
    assert refusal(lambda: core.read_namespaced_pod_log("no-such-pod", NS))[0] == 404


def test_a_restarted_container_has_its_previous_log(
    standin: KubeStandIn, runtime: ScriptedRuntime, core: CoreV1Api
) -> None:
    standin.add_deployment(NS, "recovering", {"app": "recovering"}, {"web": TALKING})
    name = pod_of(standin, "recovering")
    (container_id,) = [c for c, spec in runtime.started.items() if spec.pod == name]
    runtime.stop(container_id, 0)  # it exits; the kubelet starts the next instance
    assert standin.wait_until(lambda: core.read_namespaced_pod_log(name, NS).startswith("starting attempt 1\n"))
    first = "".join(f"{line.format(attempt=0)}\n" for line in OUTPUT)
    assert core.read_namespaced_pod_log(name, NS, previous=True) == first


def test_in_a_crash_loop_the_log_is_the_last_exited_instances(standin: KubeStandIn, core: CoreV1Api) -> None:
    name = pod_of(standin, "crashing")

    def restarts() -> int:
        count: int = standin.pods(NS, "app=crashing")[0]["status"]["containerStatuses"][0]["restartCount"]
        return count

    assert standin.wait_until(lambda: restarts() >= 2)
    previous = core.read_namespaced_pod_log(name, NS, previous=True)
    assert re.fullmatch(r"starting attempt \d+\nscripted crash\n", previous)
    current = core.read_namespaced_pod_log(name, NS)  # waiting: the same instance (or a newer one, if it restarted)
    assert re.fullmatch(r"starting attempt \d+\nscripted crash\n", current)


def test_without_a_previous_instance_the_previous_log_is_refused(standin: KubeStandIn, core: CoreV1Api) -> None:
    name = pod_of(standin, "talking")
    assert refusal(lambda: core.read_namespaced_pod_log(name, NS, previous=True)) == (
        400,
        f'previous terminated container "web" in pod "{name}" not found',
    )


def test_a_container_that_never_started_has_no_log(standin: KubeStandIn, core: CoreV1Api) -> None:
    name = pod_of(standin, "absent")
    status, message = refusal(lambda: core.read_namespaced_pod_log(name, NS))
    assert status == 400
    assert message in (
        f'container "absent" in pod "{name}" is waiting to start: image can\'t be pulled',
        f'container "absent" in pod "{name}" is waiting to start: trying and failing to pull image',
        f'container "absent" in pod "{name}" is waiting to start: ContainerCreating',
    )


def test_follow_streams_until_the_container_stops(standin: KubeStandIn, core: CoreV1Api) -> None:
    standin.add_deployment(NS, "followed", {"app": "followed"}, {"web": TALKING})
    name = pod_of(standin, "followed")
    response: Any = core.read_namespaced_pod_log(name, NS, follow=True, tail_lines=1, _preload_content=False)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(response.stream(64)), daemon=True)
    reader.start()
    assert standin.wait_until(lambda: b"".join(received) == b"serving on :8000\n")
    assert reader.is_alive()  # the stream stays open while the container runs
    core.delete_namespaced_pod(name, NS)
    reader.join(timeout=10)
    assert not reader.is_alive() and b"".join(received) == b"serving on :8000\n"


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"tailLines": "-1"}, 422),
        ({"tailLines": "ten"}, 400),
        ({"sinceSeconds": "0"}, 422),
        ({"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"}, 422),
        ({"sinceTime": "yesterday"}, 400),
    ],
)
def test_log_options_are_validated_as_the_api_server_does(query: dict[str, str], status: int) -> None:
    with pytest.raises(ApiError) as info:
        LogOptions.parse(query)
    assert info.value.code == status


def test_since_time_selects_the_lines_written_after_it() -> None:
    options = LogOptions.parse({"sinceTime": "2026-01-01T00:00:01Z", "timestamps": "true"})
    lines = ["2026-01-01T00:00:00.5Z early", "2026-01-01T00:00:01.25Z late"]
    assert options.answer(lines) == b"2026-01-01T00:00:01.250000000Z late\n"
