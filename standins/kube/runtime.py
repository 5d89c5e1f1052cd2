"""Container runtimes for the stand-in's kubelet: Docker (real containers) and a scripted one (no containers).

`DockerRuntime` is what the demo, `make server` and the deploy tests run: pulls by digest from the registry
with the node's credentials, containers configured from the pod spec, probes over HTTP on a published port.
`ScriptedRuntime` answers the same calls from data (images that cannot be pulled, that crash, that never get
ready), for tests of the API protocol alone, where starting containers would only add minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import docker
import docker.errors

#: Every container the stand-in starts carries this label (value: the stand-in's process id).
OWNER_LABEL = "io.oncology-mlops.kube-standin"
POD_LABEL = "io.oncology-mlops.kube-standin.pod"

Credentials = Callable[[str], dict[str, str] | None]


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


# --- Docker -----------------------------------------------------------------------------------------


def _registry_of(image: str) -> str | None:
    first = image.split("/", 1)[0]
    return first if "/" in image and ("." in first or ":" in first or first == "localhost") else None


def _split_reference(image: str) -> tuple[str, str]:
    """`repo@sha256:...` or `repo:tag` into (repository, digest or tag)."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    name, _, tag = image.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return image, "latest"


class DockerRuntime:
    """Runs pods' containers on the local Docker engine; ports are published on 127.0.0.1."""

    def __init__(self, credentials: Credentials | None = None, owner: str | None = None) -> None:
        self._credentials = credentials or (lambda registry: None)
        self.owner = owner or f"{os.getpid()}:{uuid.uuid4().hex[:8]}"  # leftovers are found by a dead pid
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """One Docker client per thread (the kubelet runs a thread per pod)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = docker.from_env(timeout=120)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _image_id(self, image: str) -> str:
        """The repository digest the image was pulled by (as `imageID` shows it), else the local image id."""
        found = self.client.images.get(image)
        repository = _split_reference(image)[0]
        digests = [d.split("@", 1)[1] for d in found.attrs.get("RepoDigests") or [] if d.startswith(f"{repository}@")]
        return digests[0] if digests else str(found.id)

    def pull(self, image: str, policy: str) -> str:
        if policy != "Always":
            with contextlib.suppress(docker.errors.ImageNotFound):
                return self._image_id(image)
        repository, reference = _split_reference(image)
        registry = _registry_of(image)
        auth = self._credentials(registry) if registry else None
        try:
            for line in self.client.api.pull(repository, tag=reference, stream=True, decode=True, auth_config=auth):
                if isinstance(line, dict) and line.get("error"):
                    raise PullError(f'failed to pull image "{image}": {line["error"]}')
            return self._image_id(image)
        except docker.errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise PullError(f'failed to pull image "{image}": {explanation}') from exc

    def start(self, spec: ContainerSpec, attempt: int) -> str:
        options: dict[str, Any] = {
            "name": f"k8s-standin_{spec.namespace}_{spec.pod}_{spec.name}_{attempt}",
            "detach": True,
            "labels": {OWNER_LABEL: self.owner, POD_LABEL: f"{spec.namespace}/{spec.pod}/{spec.name}"},
            "environment": spec.env,
            "ports": {f"{port}/tcp": ("127.0.0.1", None) for port in spec.ports},
            "read_only": spec.read_only,
            "tmpfs": spec.tmpfs,
            "cap_drop": spec.drop_capabilities or None,
            "security_opt": ["no-new-privileges"] if spec.no_new_privileges else None,
        }
        if spec.command is not None:
            options["entrypoint"] = spec.command
        if spec.args is not None:
            options["command"] = spec.args
        if spec.user:
            options["user"] = spec.user
        if spec.memory_bytes:
            options["mem_limit"] = spec.memory_bytes
        if spec.nano_cpus:
            options["nano_cpus"] = spec.nano_cpus
        try:
            container = self.client.containers.run(spec.image, **options)
        except docker.errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise StartError(f"failed to start container {spec.name!r}: {explanation}") from exc
        return str(container.id)

    def _inspect(self, container_id: str) -> dict[str, Any] | None:
        try:
            attrs: dict[str, Any] = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        return attrs

    def exit_code(self, container_id: str) -> int | None:
        attrs = self._inspect(container_id)
        if attrs is None:
            return 137  # removed behind our back: as if killed
        state = attrs["State"]
        return None if state.get("Running") or state.get("Status") == "created" else int(state.get("ExitCode", 1))

    def address(self, container_id: str, port: int) -> tuple[str, int] | None:
        attrs = self._inspect(container_id)
        bindings = ((attrs or {}).get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        for binding in bindings:
            if binding.get("HostPort"):
                return binding.get("HostIp") or "127.0.0.1", int(binding["HostPort"])
        return None

    def http_get(self, container_id: str, port: int, path: str, timeout: float) -> bool:
        where = self.address(container_id, port)
        if where is None:
            return False
        try:
            with urllib.request.urlopen(f"http://{where[0]}:{where[1]}{path}", timeout=timeout) as answer:
                return 200 <= int(answer.status) < 400
        except urllib.error.HTTPError as exc:
            return 200 <= exc.code < 400
        except OSError:
            return False

    def logs(self, container_id: str) -> str:
        try:
            return bytes(self.client.api.logs(container_id, tail=20)).decode(errors="replace").strip()
        except docker.errors.DockerException:
            return ""

    def remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a removal already in progress
                raise

    def remove_leftovers(self, everything_of_mine: bool = False, timeout: float = 60.0) -> list[str]:
        """Remove containers of stand-ins whose process is gone (and ours too if asked) and wait until they are
        gone (a removal another thread started counts only once it is done); their names."""
        removed: set[str] = set()
        deadline = time.monotonic() + timeout
        while True:
            doomed = [
                container
                for container in self.client.containers.list(all=True, filters={"label": OWNER_LABEL})
                if (everything_of_mine and container.labels.get(OWNER_LABEL) == self.owner)
                or not _process_alive(container.labels.get(OWNER_LABEL, "").split(":", 1)[0])
            ]
            if not doomed or time.monotonic() > deadline:
                return sorted(removed)
            for container in doomed:
                self.remove(str(container.id))
                removed.add(str(container.name))
            time.sleep(0.2)

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


def _process_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


# --- scripted ---------------------------------------------------------------------------------------


@dataclass
class ScriptedRuntime:
    """A runtime without containers, whose outcomes are data: for API-protocol tests only.

    Images in `unpullable` fail to pull, in `crashing` exit at once with code 1, in `unready` answer every
    probe with failure; everything else runs and answers. Each pull takes `pull_seconds`.
    """

    unpullable: set[str] = field(default_factory=set)
    crashing: set[str] = field(default_factory=set)
    unready: set[str] = field(default_factory=set)
    pull_seconds: float = 0.0
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
