"""The stand-in's Docker runtime: pods' containers run on the local Docker engine.

What the demo, `make server` and the deploy tests run: pulls by digest from the registry with the node's
credentials, containers configured from the pod spec, probes over HTTP on a port published on 127.0.0.1, preStop
commands by `docker exec`, and a stop as `docker stop` (SIGTERM, SIGKILL after the timeout).
Every container carries the stand-in's owner label, so a killed stand-in's leftovers are found and removed.

The one route from a pod to a service on this machine: the name `host.docker.internal` (Docker's `host-gateway`,
the default bridge's gateway), e.g. `AWS_ENDPOINT_URL_S3=http://host.docker.internal:<port>` in a Secret. The
service must listen on that gateway's address (`host_gateway_address()`), not on 127.0.0.1, which containers
cannot reach.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import docker
import docker.errors

from standins.kube.runtime import LOG_LINES, ContainerSpec, PullError, StartError

#: Every container the stand-in starts carries this label (value: the runtime's owner, `<process id>:<tag>`).
OWNER_LABEL = "io.oncology-mlops.kube-standin"
POD_LABEL = "io.oncology-mlops.kube-standin.pod"
#: The name under which pods' containers reach this machine.
HOST_ALIAS = "host.docker.internal"

Credentials = Callable[[str], dict[str, str] | None]


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

    def image_ref(self, image: str) -> str | None:
        with contextlib.suppress(docker.errors.ImageNotFound):
            return self._image_id(image)
        return None

    def pull(self, image: str) -> str:
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
            "extra_hosts": {HOST_ALIAS: "host-gateway"},
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

    def ip(self, container_id: str) -> str | None:
        settings = (self._inspect(container_id) or {}).get("NetworkSettings") or {}
        addresses = [settings.get("IPAddress")] + [
            n.get("IPAddress") for n in (settings.get("Networks") or {}).values()
        ]
        return next((address for address in addresses if address), None)

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

    def logs(self, container_id: str) -> list[str]:
        try:
            output = self.client.api.logs(container_id, timestamps=True, tail=LOG_LINES)
        except docker.errors.DockerException:
            return []
        return bytes(output).decode(errors="replace").splitlines()

    def exec(self, container_id: str, command: list[str], timeout: float) -> int | None:
        api = self.client.api
        try:
            exec_id = api.exec_create(container_id, command, stdout=False, stderr=False)["Id"]
            api.exec_start(exec_id, detach=True)
            deadline = time.monotonic() + timeout
            while True:
                found = api.exec_inspect(exec_id)
                if not found.get("Running"):
                    return int(found.get("ExitCode") or 0)
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.1)
        except docker.errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise StartError(f"cannot exec {command} in container {container_id[:12]}: {explanation}") from exc

    def stop(self, container_id: str, timeout: float) -> None:
        try:
            self.client.api.stop(container_id, timeout=max(0, math.ceil(timeout)))
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: being removed
                raise

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
                for container in self.client.containers.list(
                    all=True, filters={"label": OWNER_LABEL}, ignore_removed=True
                )
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


def host_gateway_address(client: Any = None) -> str:
    """The address `host.docker.internal` means inside pods (the default bridge's gateway, e.g. 172.17.0.1):
    a service on this machine that pods must reach listens here. Docker lists the gateway in the bridge's IPAM
    configuration only when it was set; otherwise it is the first address of the subnet, as Docker assigns it."""
    client = client or docker.from_env()
    for config in client.networks.get("bridge").attrs["IPAM"]["Config"]:
        subnet = ipaddress.ip_network(config["Subnet"])
        if subnet.version == 4:
            return str(config.get("Gateway") or next(subnet.hosts()))
    raise RuntimeError("Docker's default bridge network has no IPv4 subnet: pods cannot reach this machine")


def _process_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
