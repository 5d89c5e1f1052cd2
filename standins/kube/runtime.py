"""What the stand-in's kubelet asks of a container runtime, and a scripted runtime that runs no containers.

The real one is `standins.kube.dockerruntime.DockerRuntime`. `ScriptedRuntime` answers the same calls from
data (images that cannot be pulled, that crash, that never get ready), for tests of the API protocol alone,
where starting containers would only add minutes. `quantity` reads Kubernetes resource quantities (`512Mi`, `500m`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol


class PullError(Exception):
    """The image cannot be pulled (ErrImagePull)."""


class StartError(Exception):
    """The container cannot be created or started (CreateContainerError / RunContainerError)."""


@dataclass(frozen=True)
class ContainerSpec:
    """What the kubelet asks the runtime to run: one container of a pod, as Docker can honour it."""

    pod: str
    namespace: str
    name: str
    image: str
    pull_policy: str = "IfNotPresent"
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    user: str | None = None
    read_only: bool = False
    tmpfs: dict[str, str] = field(default_factory=dict)
    memory_bytes: int | None = None
    nano_cpus: int | None = None
    drop_capabilities: list[str] = field(default_factory=list)
    no_new_privileges: bool = False


class ContainerRuntime(Protocol):
    """The calls the kubelet makes (a small slice of the CRI)."""

    def pull(self, image: str, policy: str) -> str:
        """Make `image` present; its image ID (`PullError` when it cannot be pulled)."""

    def start(self, spec: ContainerSpec, attempt: int) -> str:
        """Create and start a container; its ID (`StartError` when it cannot start)."""

    def exit_code(self, container_id: str) -> int | None:
        """None while the container runs, else its exit code."""

    def http_get(self, container_id: str, port: int, path: str, timeout: float) -> bool:
        """A probe: True for an HTTP answer 200..399 from the container's `port`."""

    def address(self, container_id: str, port: int) -> tuple[str, int] | None:
        """Where the container's `port` answers from this machine (None: nowhere)."""

    def logs(self, container_id: str) -> str:
        """The last lines the container wrote."""

    def remove(self, container_id: str) -> None:
        """Stop and remove the container (no error when it is gone)."""

    def close(self) -> None:
        """Release what the runtime holds."""


# --- quantities -------------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 10**-3}


def quantity(text: str | int | float) -> float:
    """A Kubernetes resource quantity (`512Mi`, `1`, `500m`, `1G`) as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match[2] not in {**_BINARY, **_DECIMAL}:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(match[1]) * {**_BINARY, **_DECIMAL}[match[2]]


# --- scripted ---------------------------------------------------------------------------------------


@dataclass
class ScriptedRuntime:
    """A runtime without containers, whose outcomes are data: for API-protocol tests only.

    Images in `unpullable` fail to pull, in `crashing` exit at once with code 1, in `unready` answer every
    probe with failure; everything else runs and answers. Each pull takes `pull_seconds`. `started` keeps the
    spec of every container started (environment included), by container ID.
    """

    unpullable: set[str] = field(default_factory=set)
    crashing: set[str] = field(default_factory=set)
    unready: set[str] = field(default_factory=set)
    pull_seconds: float = 0.0
    started: dict[str, ContainerSpec] = field(default_factory=dict)  # by container ID: what the kubelet asked for
    _images: dict[str, str] = field(default_factory=dict)
    _count: int = 0

    def pull(self, image: str, policy: str) -> str:
        time.sleep(self.pull_seconds)
        if image in self.unpullable:
            raise PullError(f'failed to pull image "{image}": manifest unknown (scripted)')
        return "sha256:" + format(abs(hash(image)), "064x")[:64]

    def start(self, spec: ContainerSpec, attempt: int) -> str:
        self._count += 1
        container_id = format(self._count, "064x")
        self._images[container_id] = spec.image
        self.started[container_id] = spec
        return container_id

    def exit_code(self, container_id: str) -> int | None:
        image = self._images.get(container_id)
        return 1 if image is None or image in self.crashing else None

    def http_get(self, container_id: str, port: int, path: str, timeout: float) -> bool:
        return self._images.get(container_id) not in self.unready

    def address(self, container_id: str, port: int) -> tuple[str, int] | None:
        return None

    def logs(self, container_id: str) -> str:
        return "scripted crash" if self._images.get(container_id) in self.crashing else ""

    def remove(self, container_id: str) -> None:
        self._images.pop(container_id, None)

    def close(self) -> None:
        self._images.clear()
