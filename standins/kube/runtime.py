"""What the stand-in's kubelet asks of a container runtime, and a scripted runtime that runs no containers.

The real one is `standins.kube.dockerruntime.DockerRuntime`. `ScriptedRuntime` answers the same calls from
data (images that cannot be pulled, that crash, that never get ready, that take long to stop), for tests of the API
protocol alone, where starting containers would only add minutes; it keeps the signals each container got, in order.
`quantity` reads Kubernetes resource quantities (`512Mi`, `500m`).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

LOG_LINES = 5000  # how many of a container's last lines the runtime gives (the kubelet's log rotation, roughly)


def log_time() -> str:
    """Now, as container log lines are stamped (RFC 3339 with nanoseconds)."""
    now = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 10**9)) + f".{now % 10**9:09d}Z"


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

    def image_ref(self, image: str) -> str | None:
        """The image ID of `image` if it is present on the node, else None (the kubelet then pulls it)."""

    def pull(self, image: str) -> str:
        """Pull `image` from its registry; its image ID (`PullError` when it cannot be pulled)."""

    def start(self, spec: ContainerSpec, attempt: int) -> str:
        """Create and start a container; its ID (`StartError` when it cannot start)."""

    def exit_code(self, container_id: str) -> int | None:
        """None while the container runs, else its exit code."""

    def http_get(self, container_id: str, port: int, path: str, timeout: float) -> bool:
        """A probe: True for an HTTP answer 200..399 from the container's `port`."""

    def address(self, container_id: str, port: int) -> tuple[str, int] | None:
        """Where the container's `port` answers from this machine (None: nowhere)."""

    def ip(self, container_id: str) -> str | None:
        """The container's address on its network (the pod's IP), if it has one."""

    def logs(self, container_id: str) -> list[str]:
        """What the container wrote (stdout and stderr), a line each, each after its RFC 3339 timestamp and a space
        (as `docker logs --timestamps`); the newest `LOG_LINES` lines, none once it is removed."""

    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None:
        """Run `command` in the running container (a preStop hook); its exit code (None: still running at `timeout`)."""

    def stop(self, container_id: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds if the container still runs; returns once it has exited (the
        CRI's StopContainer). No error when it is gone."""

    def remove(self, container_id: str) -> None:
        """Remove the container, killing it (SIGKILL) if it still runs (no error when it is gone)."""

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


@dataclass(frozen=True)
class ContainerEvent:
    """What happened to a scripted container: `exec` (a preStop command, `detail`), `SIGTERM` (`detail`: the
    timeout before SIGKILL), `SIGKILL`, `exited` (`detail`: the exit code) or `removed`; `at` is `time.monotonic()`."""

    at: float
    container_id: str
    what: str
    detail: str = ""


@dataclass
class ScriptedRuntime:
    """A runtime without containers, whose outcomes are data: for API-protocol tests only.

    Images in `unpullable` fail to pull, in `crashing` exit at once with code 1, in `unready` answer every
    probe with failure; everything else runs and answers. Each pull takes `pull_seconds`; an image pulled once is
    `present` on the node (tests may put images there). `started` keeps the
    spec of every container started (environment included), by container ID. A container exits at once on
    SIGTERM (code 0) unless its image is in `stop_seconds`: then it takes that long (`math.inf`: it ignores SIGTERM),
    and is killed (137) if that is longer than the stop's timeout. `events` lists each container's preStop commands,
    signals, exit and removal in order. With `published`, every port of a running container has an address named
    after it (nothing listens there): for tests of which pods the Service proxy chooses. A container writes the lines
    `output` gives for its image as it starts (`{attempt}` is its restart count); a crashing one then
    "scripted crash". Removal discards them, as Docker does.
    """

    unpullable: set[str] = field(default_factory=set)
    crashing: set[str] = field(default_factory=set)
    unready: set[str] = field(default_factory=set)
    pull_seconds: float = 0.0
    stop_seconds: dict[str, float] = field(default_factory=dict)
    published: bool = False
    output: dict[str, list[str]] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    started: dict[str, ContainerSpec] = field(default_factory=dict)  # by container ID: what the kubelet asked for
    events: list[ContainerEvent] = field(default_factory=list)
    _images: dict[str, str] = field(default_factory=dict)
    _exits: dict[str, int] = field(default_factory=dict)
    _killed: dict[str, threading.Event] = field(default_factory=dict)
    _logs: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0

    def image_ref(self, image: str) -> str | None:
        return self._image_id(image) if image in self.present else None

    def pull(self, image: str) -> str:
        time.sleep(self.pull_seconds)
        if image in self.unpullable:
            raise PullError(f'failed to pull image "{image}": manifest unknown (scripted)')
        self.present.add(image)
        return self._image_id(image)

    @staticmethod
    def _image_id(image: str) -> str:
        return "sha256:" + format(abs(hash(image)), "064x")[:64]

    def start(self, spec: ContainerSpec, attempt: int) -> str:
        self._count += 1
        container_id = format(self._count, "064x")
        self._images[container_id] = spec.image
        self.started[container_id] = spec
        lines = [line.format(attempt=attempt) for line in self.output.get(spec.image, [])]
        if spec.image in self.crashing:
            lines.append("scripted crash")
        self._logs[container_id] = [f"{log_time()} {line}" for line in lines]
        return container_id

    def exit_code(self, container_id: str) -> int | None:
        if container_id in self._exits:
            return self._exits[container_id]
        image = self._images.get(container_id)
        return 1 if image is None or image in self.crashing else None

    def http_get(self, container_id: str, port: int, path: str, timeout: float) -> bool:
        return self._images.get(container_id) not in self.unready

    def address(self, container_id: str, port: int) -> tuple[str, int] | None:
        running = self.published and self.exit_code(container_id) is None
        return (f"{container_id[-12:]}.scripted.invalid", port) if running else None

    def ip(self, container_id: str) -> str | None:
        return None

    def logs(self, container_id: str) -> list[str]:
        return list(self._logs.get(container_id, []))[-LOG_LINES:]

    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None:
        self._event(container_id, "exec", " ".join(command))
        return 0 if self.exit_code(container_id) is None else 126

    def stop(self, container_id: str, timeout: float) -> None:
        if self.exit_code(container_id) is not None:
            return
        self._event(container_id, "SIGTERM", f"{timeout:g}")
        takes = self.stop_seconds.get(self._images.get(container_id, ""), 0.0)
        killed = self._killed.setdefault(container_id, threading.Event())
        if not killed.wait(min(takes, timeout)):  # else removed (killed) meanwhile
            self._finish(container_id, killed=takes > timeout)

    def remove(self, container_id: str) -> None:
        if container_id in self._images:
            self._finish(container_id, killed=True)
        self._killed.setdefault(container_id, threading.Event()).set()
        self._logs.pop(container_id, None)
        if self._images.pop(container_id, None) is not None:
            self._event(container_id, "removed")

    def close(self) -> None:
        self._images.clear()
        self._logs.clear()

    def events_of(self, container_id: str) -> list[str]:
        """What happened to one container, in order (`exec`, `SIGTERM`, `SIGKILL`, `exited`, `removed`)."""
        return [event.what for event in list(self.events) if event.container_id == container_id]

    def _finish(self, container_id: str, *, killed: bool) -> None:
        """The container exits (once): at SIGKILL with 137, else with 0 (it handled SIGTERM)."""
        with self._lock:
            if self.exit_code(container_id) is not None:
                return
            self._exits[container_id] = 137 if killed else 0
        if killed:
            self._event(container_id, "SIGKILL")
        self._event(container_id, "exited", str(self._exits[container_id]))

    def _event(self, container_id: str, what: str, detail: str = "") -> None:
        self.events.append(ContainerEvent(time.monotonic(), container_id, what, detail))
