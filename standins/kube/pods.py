"""Pods as the stand-in keeps them: object metadata and spec, the kubelet's record of each container, and the
Pod object (phase, conditions, container statuses) as the API server answers it.

Deletion is graceful, as the API server records it (`Pod.terminate`): `metadata.deletionTimestamp` (now + the grace
period) and `deletionGracePeriodSeconds` (the DELETE's `gracePeriodSeconds`, else the spec's
`terminationGracePeriodSeconds`, 30 by default; negative counts as 1); a later DELETE may only shorten it; 0 removes
the object at once. A terminating pod is not ready (out of the Service's endpoints) and is no ReplicaSet's replica;
the kubelet (`standins.kube.kubelet`) stops its containers and the pod is gone once they have exited.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

JSON = dict[str, Any]
DEFAULT_GRACE_SECONDS = 30
HOST_IP = "127.0.0.1"  # the node's address (`status.hostIP`): this machine


def timestamp(when: datetime) -> str:
    """A time as the API server writes timestamps."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_text() -> str:
    """The current time as the API server writes timestamps."""
    return timestamp(datetime.now(UTC))


@dataclass
class ProbeState:
    """When one probe runs next, and its consecutive results."""

    next_at: float
    failures: int = 0
    successes: int = 0


@dataclass
class Container:
    """The kubelet's record of one container of a pod."""

    spec: JSON
    image_id: str = ""
    container_id: str | None = None
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    started: bool = False
    ready: bool = False
    restart_count: int = 0
    retry_at: float = 0.0
    backoff: float = 0.0
    probes: dict[str, ProbeState] = field(default_factory=dict)
    last_log: list[str] | None = None  # the output of its last exited instance (`lastState.terminated`)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> JSON:
        """The container's entry in `status.containerStatuses`."""
        status: JSON = {
            "name": self.name,
            "image": self.spec["image"],
            "imageID": f"docker-pullable://{self.spec['image'].split('@')[0]}@{self.image_id}" if self.image_id else "",
            "ready": self.ready,
            "started": self.started and self.container_id is not None,
            "restartCount": self.restart_count,
            "state": dict(self.state),
            "lastState": dict(self.last_state),
        }
        if self.container_id:
            status["containerID"] = f"docker://{self.container_id}"
        return status


@dataclass
class Pod:
    """A pod: its object metadata and spec, and the kubelet's view of its containers."""

    namespace: str
    name: str
    labels: dict[str, str]
    owner: JSON
    spec: JSON
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=now_text)
    resource_version: int = 0
    containers: list[Container] = field(default_factory=list)
    deletion_time: datetime | None = None  # metadata.deletionTimestamp
    deletion_grace: int | None = None  # metadata.deletionGracePeriodSeconds
    kill_by: float | None = None  # time.monotonic() by which a shortened grace period ends
    gone: bool = False
    ready_since: float | None = None
    ip: str = ""  # status.podIP: the runtime's address of the pod's containers, else a stable made-up one

    def __post_init__(self) -> None:
        if not self.containers:
            self.containers = [Container(spec=c) for c in self.spec.get("containers", [])]
        if not self.ip:
            self.ip = f"10.244.0.{int(self.uid.replace('-', ''), 16) % 254 + 1}"

    def reference(self, container: str | None = None) -> JSON:
        """An `ObjectReference` to the pod, or to one of its containers (as events name what they are about)."""
        ref: JSON = {
            "kind": "Pod",
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "apiVersion": "v1",
            "resourceVersion": str(self.resource_version),
        }
        if container is not None:
            ref["fieldPath"] = f"spec.containers{{{container}}}"
        return ref

    @property
    def deleting(self) -> bool:
        """Terminating: deleted, its containers not yet all exited."""
        return self.deletion_time is not None

    def terminate(self, grace_seconds: int | None = None) -> bool:
        """Graceful deletion as the API server records it (see the module docstring); False when nothing changes
        (already terminating with a grace period no longer than this one)."""
        spec_grace = self.spec.get("terminationGracePeriodSeconds")
        period = grace_seconds if grace_seconds is not None else spec_grace
        period = DEFAULT_GRACE_SECONDS if period is None else (1 if int(period) < 0 else int(period))
        now = datetime.now(UTC)
        if self.deletion_time is None or self.deletion_grace is None:
            when = now + timedelta(seconds=period)
        elif grace_seconds is None or period >= self.deletion_grace:
            return False
        else:  # only shortened: the timestamp moves back by the difference, never into the past
            when = self.deletion_time - timedelta(seconds=self.deletion_grace - period)
            if when < now:
                when, period = now, min(period, 1)
            self.kill_by = time.monotonic() + (when - now).total_seconds()
        self.deletion_time, self.deletion_grace = when, period
        if period == 0:
            self.gone = True  # removed from the API at once; the kubelet kills its containers
        return True

    @property
    def ready(self) -> bool:
        return not self.deleting and all(c.ready for c in self.containers)

    def available(self, min_ready_seconds: float, now: float) -> bool:
        """Ready for at least `min_ready_seconds`."""
        return self.ready and self.ready_since is not None and now - self.ready_since >= min_ready_seconds

    def phase(self) -> str:
        return "Running" if any(c.container_id or c.restart_count for c in self.containers) else "Pending"

    def to_json(self) -> JSON:
        """The Pod object as the API server answers it."""
        ready = "True" if self.ready else "False"
        conditions = [
            {"type": kind, "status": value, "lastTransitionTime": self.created}
            for kind, value in (
                ("Initialized", "True"),
                ("Ready", ready),
                ("ContainersReady", ready),
                ("PodScheduled", "True"),
            )
        ]
        metadata: JSON = {
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "labels": dict(self.labels),
            "creationTimestamp": self.created,
            "resourceVersion": str(self.resource_version),
            "ownerReferences": [self.owner],
        }
        if self.deletion_time is not None:
            metadata["deletionTimestamp"] = timestamp(self.deletion_time)
            metadata["deletionGracePeriodSeconds"] = self.deletion_grace
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {**self.spec, "nodeName": "kube-standin"},
            "status": {
                "phase": self.phase(),
                "conditions": conditions,
                "hostIP": HOST_IP,
                "hostIPs": [{"ip": HOST_IP}],
                "podIP": self.ip,
                "podIPs": [{"ip": self.ip}],
                "startTime": self.created,
                "containerStatuses": [c.status() for c in self.containers],
            },
        }
