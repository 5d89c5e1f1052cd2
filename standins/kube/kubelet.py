"""The stand-in's kubelet: one thread per pod pulls, starts, probes and restarts its containers.

What the real kubelet does and this one does too: pull per `imagePullPolicy` (an image already on the node is not
pulled again unless the policy is `Always`; `ErrImagePull`, then `ImagePullBackOff`; `ErrImageNeverPull`), make the
environment from `env` and Secrets (`standins.kube.secretdata`; a missing Secret or key is
`CreateContainerConfigError`, retried after at most a second), run each container as the pod spec says, the
startup, readiness and liveness probes (`httpGet`; `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
`failureThreshold`), a restart with exponential back-off when a container exits or fails its liveness probe
(`CrashLoopBackOff`, `restartCount`), and the state behind the pod's phase, conditions and container statuses
(`standins.kube.pods` shows them). It records the events the real one records (Pulling, Pulled, Failed, BackOff,
Created, Started, Unhealthy, Killing; `standins.kube.events`) and keeps an exited container's output for
`kubectl logs` (`--previous`) before the runtime removes the container.

A deleted pod terminates as the kubelet's killContainer does it, in the pod's thread, so that nothing waits for it
(the controller counts a terminating pod as no replica, the proxy sends it no traffic): for every running container
at once, the `lifecycle.preStop` hook (`exec`, `sleep`, `httpGet`; a failure is logged and termination goes on),
bounded by the grace period, which counts from the hook's start; then SIGTERM with the rest of the grace period (at
least `minimum_grace`, the kubelet's 2 s) before SIGKILL (`ContainerRuntime.stop`); then removal, and the pod is gone.
A grace period of 0 kills at once, as does the stand-in stopping (its wait stays bounded); a grace period shortened
by a later DELETE kills when the shorter one ends.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from standins.kube.events import EventLog
from standins.kube.pods import Container, Pod, ProbeState, now_text
from standins.kube.runtime import ContainerRuntime, ContainerSpec, PullError, StartError, quantity
from standins.kube.secretdata import ConfigError, SecretLookup, container_env

JSON = dict[str, Any]
log = logging.getLogger(__name__)

PROBE_KINDS = ("startupProbe", "livenessProbe", "readinessProbe")
MINIMUM_GRACE_SECONDS = 2.0  # the kubelet's minimumGracePeriodInSeconds, for the stop after a preStop hook


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


def go_duration(seconds: float) -> str:
    """A duration cut to milliseconds as Go prints it (`512ms`, `2.5s`, `1m3.25s`), as the kubelet's events say."""
    millis = int(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms" if millis else "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


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
        minimum_grace: float = MINIMUM_GRACE_SECONDS,
        events: EventLog,
        on_change: Callable[[Pod], None] = lambda pod: None,
        secrets: SecretLookup = lambda namespace, name: None,
    ) -> None:
        self.runtime = runtime
        self._lock = lock
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.tick = tick
        self.minimum_grace = minimum_grace
        self._on_change = on_change
        self._secrets = secrets
        self.events = events
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._living: dict[int, Pod] = {}  # by id(): pods whose thread runs

    def _record(self, pod: Pod, container: Container, kind: str, reason: str, message: str) -> None:
        """An event about one of the pod's containers, from the kubelet."""
        self.events.record(pod.reference(container.name), kind, reason, message, "kubelet")

    def run(self, pod: Pod) -> None:
        """Start living `pod` in a thread of its own."""
        with self._lock:
            self._living[id(pod)] = pod
        thread = threading.Thread(target=self._live, args=(pod,), name=f"kubelet-{pod.name}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every pod's thread; each removes its containers at once (terminating ones too)."""
        self._stopped.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def terminating(self) -> int:
        """How many deleted pods are not yet gone (their containers are being stopped)."""
        with self._lock:
            return sum(pod.deleting for pod in self._living.values())

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
            self._terminate(pod)

    # termination

    def _terminate(self, pod: Pod) -> None:
        """Stop the pod's containers (see the module docstring), then mark the pod gone."""
        running = [(c, c.container_id) for c in pod.containers if c.container_id]
        try:
            started = time.monotonic()
            killers = [
                threading.Thread(
                    target=self._kill, args=(pod, c, cid, started), name=f"kubelet-kill-{c.name}", daemon=True
                )
                for c, cid in running
                if not self._cut_short(pod)
            ]
            for killer in killers:
                killer.start()
            while any(killer.is_alive() for killer in killers) and not self._cut_short(pod):
                self._stopped.wait(self.tick)
            for _, cid in running:  # SIGKILL whatever still runs (cut short), and remove
                self.runtime.remove(cid)
            bound = time.monotonic() + 5.0
            for killer in killers:
                killer.join(timeout=max(0.0, bound - time.monotonic()))
        finally:
            with self._lock:
                self._living.pop(id(pod), None)
                pod.gone = True
                self._on_change(pod)

    def _cut_short(self, pod: Pod) -> bool:
        """No more grace: the stand-in stops, the pod was deleted with a grace period of 0 (or never was deleted: the
        pod's thread failed), or a shortened grace period has run out."""
        return (
            self._stopped.is_set()
            or not pod.deletion_grace
            or (pod.kill_by is not None and time.monotonic() >= pod.kill_by)
        )

    def _kill(self, pod: Pod, container: Container, container_id: str, started: float) -> None:
        """The kubelet's killContainer: preStop within the grace period, then stop with what is left of it."""
        grace = int(pod.deletion_grace or 0)
        hook = (container.spec.get("lifecycle") or {}).get("preStop")
        try:
            code = self.runtime.exit_code(container_id)
            if code is None:  # only a running container gets its hook and signals
                self._record(pod, container, "Normal", "Killing", f"Stopping container {container.name}")
                if hook and grace > 0:
                    self._pre_stop(pod, container, container_id, hook, started + grace)
                    grace -= int(time.monotonic() - started)
                if self._cut_short(pod):
                    return
                self.runtime.stop(container_id, max(float(grace), self.minimum_grace))
                code = self.runtime.exit_code(container_id)
            with self._lock:
                container.ready = False
                container.state = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "finishedAt": now_text(),
                        "containerID": f"docker://{container_id}",
                    }
                }
                self._on_change(pod)
        except Exception:  # the pod's thread removes the container all the same
            log.exception("kubelet: stopping pod %s/%s container %s", pod.namespace, pod.name, container.name)

    def _pre_stop(self, pod: Pod, container: Container, container_id: str, hook: JSON, deadline: float) -> None:
        """Run a preStop hook until it ends or the grace period does; a failure is logged (FailedPreStopHook)."""
        left = max(0.0, deadline - time.monotonic())
        failure = ""
        try:
            if "exec" in hook:
                command = [str(part) for part in hook["exec"].get("command") or []]
                code = self.runtime.exec(container_id, command, left)
                if code is None:
                    failure = f"exec {command} did not end within the grace period"
                elif code != 0:
                    failure = f"exec {command} exited with {code}"
            elif "sleep" in hook:
                end = time.monotonic() + min(float(hook["sleep"].get("seconds", 0)), left)
                while not self._cut_short(pod) and time.monotonic() < end:
                    self._stopped.wait(max(0.0, min(self.tick, end - time.monotonic())))
            elif "httpGet" in hook:
                http = hook["httpGet"]
                port = probe_port(container.spec, http.get("port"))
                if port is None or not self.runtime.http_get(container_id, port, str(http.get("path", "/")), left):
                    failure = f"httpGet {http.get('path', '/')} on port {http.get('port')} failed"
        except Exception as exc:  # any runtime error is the hook's failure
            failure = f"{type(exc).__name__}: {exc}"
        if failure:
            log.warning(
                "kubelet: FailedPreStopHook pod %s/%s container %s: %s",
                pod.namespace,
                pod.name,
                container.name,
                failure,
            )

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
            present = self.runtime.image_ref(spec.image) if spec.pull_policy != "Always" else None
            if present is not None:
                container.image_id = present
                message = f'Container image "{spec.image}" already present on machine'
                self._record(pod, container, "Normal", "Pulled", message)
            elif spec.pull_policy == "Never":
                with self._lock:
                    container.retry_at = now + min(1.0, self.backoff)
                    message = f'Container image "{spec.image}" is not present with pull policy of Never'
                    waiting = {"waiting": {"reason": "ErrImageNeverPull", "message": message}}
                    if container.state != waiting:
                        container.state = waiting
                        self._record(pod, container, "Warning", "ErrImageNeverPull", message)
                        self._on_change(pod)
                return
        if not container.image_id:
            self._record(pod, container, "Normal", "Pulling", f'Pulling image "{spec.image}"')
            try:
                image_id = self.runtime.pull(spec.image)
            except PullError as exc:
                with self._lock:
                    failure = str(exc)
                    self._record(pod, container, "Warning", "Failed", failure[:1].upper() + failure[1:])
                    waiting = container.state.get("waiting") or {}
                    if waiting.get("reason") == "ErrImagePull":
                        seconds = self._back_off(container, now)
                        message = f'Back-off pulling image "{spec.image}" ({seconds:g}s): {exc}'
                        container.state = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
                        self._record(pod, container, "Normal", "BackOff", f'Back-off pulling image "{spec.image}"')
                    else:
                        container.retry_at = now + min(1.0, self.backoff)
                        container.state = {"waiting": {"reason": "ErrImagePull", "message": str(exc)}}
                    self._record(pod, container, "Warning", "Failed", f"Error: {container.state['waiting']['reason']}")
                    self._on_change(pod)
                return
            container.image_id = image_id
            took = go_duration(time.monotonic() - now)
            pulled = f'Successfully pulled image "{spec.image}" in {took} ({took} including waiting)'
            self._record(pod, container, "Normal", "Pulled", pulled)
        try:
            spec = dataclasses.replace(spec, env=container_env(container.spec, pod.namespace, self._secrets))
        except ConfigError as exc:
            with self._lock:
                container.retry_at = now + min(1.0, self.backoff)  # the pod worker retries the sync
                waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                if container.state != waiting:
                    container.state = waiting
                    self._record(pod, container, "Warning", "Failed", f"Error: {exc}")
                    self._on_change(pod)
            return
        try:
            container_id = self.runtime.start(spec, container.restart_count)
        except StartError as exc:
            with self._lock:
                self._back_off(container, now)
                container.state = {"waiting": {"reason": "CreateContainerError", "message": str(exc)}}
                self._record(pod, container, "Warning", "Failed", f"Error: {exc}")
                self._on_change(pod)
            return
        if self._stopped.is_set() or pod.deleting:  # stopped while it started: it must not outlive the stand-in
            self.runtime.remove(container_id)
            return
        address = self.runtime.ip(container_id)
        with self._lock:
            pod.ip = address or pod.ip
            container.container_id = container_id
            container.state = {"running": {"startedAt": now_text()}}
            container.started = "startupProbe" not in container.spec
            container.ready = False
            container.probes = {
                kind: ProbeState(next_at=now + float(container.spec[kind].get("initialDelaySeconds", 0)))
                for kind in PROBE_KINDS
                if kind in container.spec
            }
            self._record(pod, container, "Normal", "Created", f"Created container: {container.name}")
            self._record(pod, container, "Normal", "Started", f"Started container {container.name}")
            self._on_change(pod)

    def _terminated(self, pod: Pod, container: Container, code: int, reason: str) -> None:
        container_id = container.container_id or ""
        lines = self.runtime.logs(container_id)
        self.runtime.remove(container_id)
        with self._lock:
            now = time.monotonic()
            container.last_log = lines  # as the kubelet keeps the dead container until the next one exits
            last_words = "\n".join(line.partition(" ")[2] for line in lines[-20:]).strip()
            container.last_state = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "message": last_words[-1000:],
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
            backing_off = f"Back-off restarting failed container {container.name} in pod {pod.name}_{pod.namespace}"
            self._record(pod, container, "Warning", "BackOff", f"{backing_off}({pod.uid})")
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
                if not ok:
                    what = f"{kind.removesuffix('Probe').capitalize()} probe failed"
                    where = f"HTTP GET {http.get('path', '/')} on port {http.get('port')}"
                    self._record(pod, container, "Warning", "Unhealthy", f"{what}: {where}: no answer 200..399")
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
                restart = f"Container {container.name} failed {kind.removesuffix('Probe')} probe, will be restarted"
                self._record(pod, container, "Normal", "Killing", restart)
                self._terminated(pod, container, 137, "Error")  # the kubelet kills it (SIGKILL: 137)
                return
