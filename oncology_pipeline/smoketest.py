"""The smoke test of a built image: run it, ask it for one prediction, compare with the bundle's own answer.

The container runs with a read-only root file system and a small writable /tmp, as the Deployment runs it,
its port published on the loopback interface only; it is removed on every path (no Prefect here).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from oncology_pipeline.errors import SmokeTestFailed

CONTAINER_PORT = 8000
#: Label on smoke-test containers, so leftovers (there should be none) are easy to find.
SMOKE_TEST_LABEL = "org.oncology-mlops.smoke-test"


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test saw: the served answer and how long the container took to be ready."""

    image: str
    response: dict[str, Any]
    ready_seconds: float
    latency_ms: float


def _http(method: str, url: str, body: Mapping[str, Any] | None, timeout: float) -> tuple[int, bytes]:
    """One HTTP request; returns status and body (HTTP errors are answers, not exceptions)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _logs(container: Any) -> str:
    """The container's last log lines, or why they are unavailable."""
    try:
        text = bytes(container.logs(tail=50)).decode(errors="replace").rstrip()
    except docker.errors.APIError as exc:
        return f"(no logs: {exc})"
    return text or "(it wrote none)"


def _host_port(container: Any) -> int:
    """The loopback port docker published the service port on."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{CONTAINER_PORT}/tcp") or []
    if not bindings:
        raise SmokeTestFailed(f"container {container.short_id} published no port for {CONTAINER_PORT}/tcp")
    return int(bindings[0]["HostPort"])


def _compare(response: Mapping[str, Any], expected: Mapping[str, Any], model_version: str) -> list[str]:
    """What differs between the served answer and the expected one."""
    problems = []
    if response.get("prediction") != expected.get("prediction"):
        problems.append(f"prediction {response.get('prediction')!r} != expected {expected.get('prediction')!r}")
    served = response.get("probability_malignant")
    wanted = expected.get("probability_malignant")
    if wanted is not None and (
        not isinstance(served, (int, float)) or not math.isclose(served, float(wanted), abs_tol=1e-6)
    ):
        problems.append(f"probability_malignant {served!r} != expected {wanted!r}")
    if response.get("model_version") != model_version:
        problems.append(f"model_version {response.get('model_version')!r} != bundle's {model_version!r}")
    return problems


def smoke_test_image(
    client: docker.DockerClient,
    image: str,
    bundle_dir: Path,
    tumor: Mapping[str, int],
    expected: Mapping[str, Any],
    timeout: float = 60.0,
) -> SmokeResult:
    """Run `image` (read-only root fs, loopback port), ask it for one prediction, compare with `expected`.

    `expected` holds the bundle's own answer (`prediction`, optionally `probability_malignant`); the
    served `model_version` must be the bundle's. The container is removed on every path, a failed start and
    an interruption included. Raises SmokeTestFailed, with the container's logs, on a wrong answer, a crash or
    a timeout.
    """
    model_version = str(json.loads((bundle_dir / "metadata.json").read_text())["model_version"])
    try:
        container = client.containers.create(
            image,
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},
            read_only=True,
            tmpfs={"/tmp": "rw,size=16m"},
            labels={SMOKE_TEST_LABEL: "true"},
        )
    except docker.errors.APIError as exc:
        raise SmokeTestFailed(f"cannot create a container of {image}: {exc.explanation or exc}") from exc
    started = time.monotonic()
    try:  # from here on, whatever happens (a failed start, a timeout, an interruption), the container goes
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise SmokeTestFailed(f"cannot start a container of {image}: {exc.explanation or exc}") from exc
        base = f"http://127.0.0.1:{_host_port(container)}"
        while True:
            try:
                status, _ = _http("GET", f"{base}/readyz", None, timeout=2)
            except (OSError, urllib.error.URLError):
                status = 0
            if status == 200:
                break
            container.reload()
            if container.status in ("exited", "dead"):
                raise SmokeTestFailed(
                    f"{image} exited before it was ready (status {container.status}); logs:\n{_logs(container)}"
                )
            if time.monotonic() - started > timeout:
                raise SmokeTestFailed(
                    f"{image} was not ready (GET /readyz 200) within {timeout:g} s; logs:\n{_logs(container)}"
                )
            time.sleep(0.25)
        ready_seconds = time.monotonic() - started
        sent = time.perf_counter()
        status, body = _http("POST", f"{base}/v1/predictions", tumor, timeout=10)
        latency_ms = (time.perf_counter() - sent) * 1000
        if status != 200:
            raise SmokeTestFailed(
                f"{image} answered POST /v1/predictions with {status}: {body[:500]!r}; logs:\n{_logs(container)}"
            )
        response: dict[str, Any] = json.loads(body)
        problems = _compare(response, expected, model_version)
        if problems:
            raise SmokeTestFailed(
                f"{image} does not serve the bundle's answer: {'; '.join(problems)}; logs:\n{_logs(container)}"
            )
        return SmokeResult(image=image, response=response, ready_seconds=ready_seconds, latency_ms=latency_ms)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
