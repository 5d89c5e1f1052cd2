"""The stand-in's kubelet: one thread per pod pulls, starts, probes and restarts its containers.

What the real kubelet does and this one does too: pull per `imagePullPolicy` (`ErrImagePull`, then
`ImagePullBackOff`), make the environment from `env` and Secrets (`standins.kube.secretdata`; a missing Secret or
key is `CreateContainerConfigError`, retried after at most a second), run each container as the pod spec says, the
startup, readiness and liveness probes (`httpGet`; `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
`failureThreshold`), a restart with exponential back-off when a container exits or fails its liveness probe
(`CrashLoopBackOff`, `restartCount`), and the state behind the pod's phase, conditions and container statuses
(`standins.kube.pods` shows them).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from standins.kube.pods import Container, Pod, ProbeState, now_text
from standins.kube.runtime import ContainerRuntime, ContainerSpec, PullError, StartError, quantity
from standins.kube.secretdata import ConfigError, SecretLookup, container_env

JSON = dict[str, Any]
log = logging.getLogger(__name__)

PROBE_KINDS = ("startupProbe", "livenessProbe", "readinessProbe")


def container_spec(pod: Pod, container: JSON) -> ContainerSpec:
    """What Docker can honour of a container spec: command, ports, user, read-only root, limits.

    The environment is added by the kubelet when the container starts (`container_env`: Secrets may appear later).
    """
    pod_security = pod.spec.get("securityContext") or {}
    security = container.get("securityContext") or {}
    uid = security.get("runAsUser", pod_security.get("runAsUser"))
    gid = security.get("runAsGroup", pod_security.get("runAsGroup"))
    user = None if uid is None else (f"{uid}:{gid}" if gid is not None else str(uid))
    ports = [int(p["containerPort"]) for p in container.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
    for kind in PROBE_KINDS:
        port = ((container.get(kind) or {}).get("httpGet") or {}).get("port")
        if isinstance(port, int) and port not in ports:
            ports.append(port)
    volumes = {v.get("name"): v for v in pod.spec.get("volumes") or []}
    tmpfs: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        empty_dir = volumes.get(mount.get("name"), {}).get("emptyDir")
        if empty_dir is not None:
            limit = empty_dir.get("sizeLimit")
            tmpfs[mount["mountPath"]] = f"size={int(quantity(limit))}" if limit else ""
    limits = (container.get("resources") or {}).get("limits") or {}
    return ContainerSpec(
        pod=pod.name,
        namespace=pod.namespace,
        name=container["name"],
        image=container["image"],
        pull_policy=container.get("imagePullPolicy") or "IfNotPresent",
        command=container.get("command"),
        args=container.get("args"),
        ports=ports,
        user=user,
        read_only=bool(security.get("readOnlyRootFilesystem")),
        tmpfs=tmpfs,
        memory_bytes=int(quantity(limits["memory"])) if "memory" in limits else None,
        nano_cpus=int(quantity(limits["cpu"]) * 1e9) if "cpu" in limits else None,
        drop_capabilities=list((security.get("capabilities") or {}).get("drop") or []),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
    )


def probe_port(container: JSON, port: Any) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    return next((int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name") == port), None)


class Kubelet:
    """Runs each pod in a thread of its own; state changes are made under the stand-in's lock."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        lock: threading.RLock,
        *,
        backoff: float = 10.0,
        max_backoff: float = 300.0,
        tick: float = 0.1,
        on_change: Callable[[Pod], None] = lambda pod: None,
        secrets: SecretLookup = lambda namespace, name: None,
    ) -> None:
        self.runtime = runtime
        self._lock = lock
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.tick = tick
        self._on_change = on_change
        self._secrets = secrets
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def run(self, pod: Pod) -> None:
        """Start living `pod` in a thread of its own."""
        thread = threading.Thread(target=self._live, args=(pod,), name=f"kubelet-{pod.name}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every pod's thread; each removes its containers."""
        self._stopped.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def _live(self, pod: Pod) -> None:
        try:
            while not pod.deleting and not self._stopped.is_set():
                for container in pod.containers:
                    try:
                        self._advance(pod, container)
                    except Exception:  # a runtime hiccup must not end the pod's life: log, retry next tick
                        log.exception("kubelet: pod %s/%s container %s", pod.namespace, pod.name, container.name)
                with self._lock:
                    if pod.ready and pod.ready_since is None:
                        pod.ready_since = time.monotonic()
                    elif not pod.ready:
                        pod.ready_since = None
                self._stopped.wait(self.tick)
        finally:
            for container in pod.containers:
                if container.container_id:
                    self.runtime.remove(container.container_id)
            with self._lock:
                pod.gone = True
                self._on_change(pod)

    def _advance(self, pod: Pod, container: Container) -> None:
        now = time.monotonic()
        if container.container_id is None:
            if now >= container.retry_at:
                self._start(pod, container, now)
            return
        code = self.runtime.exit_code(container.container_id)
        if code is not None:
            self._terminated(pod, container, code, "Error" if code else "Completed")
            return
        self._probe(pod, container, now)

    def _back_off(self, container: Container, now: float) -> float:
        container.backoff = self.backoff if container.backoff == 0 else min(2 * container.backoff, self.max_backoff)
        container.retry_at = now + container.backoff
        return container.backoff

    def _start(self, pod: Pod, container: Container, now: float) -> None:
        spec = container_spec(pod, container.spec)
        if not container.image_id:
            try:
                image_id = self.runtime.pull(spec.image, spec.pull_policy)
            except PullError as exc:
                with self._lock:
                    waiting = container.state.get("waiting") or {}
                    if waiting.get("reason") == "ErrImagePull":
                        seconds = self._back_off(container, now)
                        message = f'Back-off pulling image "{spec.image}" ({seconds:g}s): {exc}'
                        container.state = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
                    else:
                        container.retry_at = now + min(1.0, self.backoff)
                        container.state = {"waiting": {"reason": "ErrImagePull", "message": str(exc)}}
                    self._on_change(pod)
                return
            container.image_id = image_id
        try:
            spec = dataclasses.replace(spec, env=container_env(container.spec, pod.namespace, self._secrets))
        except ConfigError as exc:
            with self._lock:
                container.retry_at = now + min(1.0, self.backoff)  # the pod worker retries the sync
                waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                if container.state != waiting:
                    container.state = waiting
                    self._on_change(pod)
            return
        try:
            container_id = self.runtime.start(spec, container.restart_count)
        except StartError as exc:
            with self._lock:
                self._back_off(container, now)
                container.state = {"waiting": {"reason": "CreateContainerError", "message": str(exc)}}
                self._on_change(pod)
            return
        if self._stopped.is_set() or pod.deleting:  # stopped while it started: it must not outlive the stand-in
            self.runtime.remove(container_id)
            return
        with self._lock:
            container.container_id = container_id
            container.state = {"running": {"startedAt": now_text()}}
            container.started = "startupProbe" not in container.spec
            container.ready = False
            container.probes = {
                kind: ProbeState(next_at=now + float(container.spec[kind].get("initialDelaySeconds", 0)))
                for kind in PROBE_KINDS
                if kind in container.spec
            }
            self._on_change(pod)

    def _terminated(self, pod: Pod, container: Container, code: int, reason: str) -> None:
        container_id = container.container_id or ""
        logs = self.runtime.logs(container_id)
        self.runtime.remove(container_id)
        with self._lock:
            now = time.monotonic()
            container.last_state = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "message": logs[-1000:],
                    "finishedAt": now_text(),
                    "containerID": f"docker://{container_id}",
                }
            }
            container.container_id = None
            container.ready = False
            container.started = False
            container.restart_count += 1
            seconds = self._back_off(container, now)
            message = f"back-off {seconds:g}s restarting failed container={container.name} pod={pod.name}"
            container.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            self._on_change(pod)

    def _probe(self, pod: Pod, container: Container, now: float) -> None:
        container_id = container.container_id or ""
        kinds = ["startupProbe"] if not container.started else ["livenessProbe", "readinessProbe"]
        if container.started and "readinessProbe" not in container.spec and not container.ready:
            with self._lock:
                container.ready = True
                self._on_change(pod)
        for kind in kinds:
            state = container.probes.get(kind)
            if state is None or now < state.next_at:
                continue
            probe = container.spec[kind]
            http = probe.get("httpGet") or {}
            port = probe_port(container.spec, http.get("port"))
            period = float(probe.get("periodSeconds", 10))
            ok = port is not None and self.runtime.http_get(
                container_id, port, str(http.get("path", "/")), float(probe.get("timeoutSeconds", 1))
            )
            threshold = int(probe.get("failureThreshold", 3))
            with self._lock:
                state.next_at = time.monotonic() + period
                state.failures, state.successes = (0, state.successes + 1) if ok else (state.failures + 1, 0)
                if kind == "startupProbe" and ok:
                    container.started = True
                    for other in ("livenessProbe", "readinessProbe"):
                        if other in container.probes:
                            container.probes[other].next_at = time.monotonic()
                elif kind == "readinessProbe" and container.ready != ok and (ok or state.failures >= threshold):
                    container.ready = ok
                self._on_change(pod)
            if not ok and kind != "readinessProbe" and state.failures >= threshold:
                self._terminated(pod, container, 137, "Error")  # the kubelet kills it (SIGKILL: 137)
                return
