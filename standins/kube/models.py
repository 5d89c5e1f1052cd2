"""The stand-in's store: Deployments and ReplicaSets (apps/v1), Services, Pods and Secrets (v1), with validation.

One `Backend` holds every object, the resource version counter and the lock that the HTTP handlers, the
controller and the kubelet share; `reset()` empties it in one call. Every change that bumps the resource version
is recorded in its `ChangeLog` (ADDED, MODIFIED, DELETED), which watches read (`standins.kube.watch`).
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import UserDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from standins.kube.events import EventLog
from standins.kube.exceptions import ApiError, already_exists, bad_request, invalid, not_found
from standins.kube.patches import json_patch, merge_patch, strategic_merge
from standins.kube.pods import Pod, now_text
from standins.kube.secretdata import normalize_secret
from standins.kube.selectors import matches, parse_label_selector

JSON = dict[str, Any]

SMP = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
GROUPS = {"deployments": "apps", "replicasets": "apps", "services": "", "pods": "", "secrets": ""}
KINDS = {
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "pods": "Pod",
    "services": "Service",
    "secrets": "Secret",
}
API_VERSIONS = {resource: f"{group}/v1" if group else "v1" for resource, group in GROUPS.items()}
RESOURCES = {kind: resource for resource, kind in KINDS.items()}
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
#: How many changes the log keeps: a watch from an older resource version gets 410 Gone, as after etcd's compaction.
HISTORY = 1000
Key = tuple[str, str, str]


def owner_of(obj: JSON) -> str | None:
    """The name of an object's controlling owner."""
    owners = obj["metadata"].get("ownerReferences") or [{}]
    name: str | None = owners[0].get("name")
    return name


def patched_copy(current: JSON, content_type: str, body: Any) -> JSON:
    """`current` with a PATCH body applied in the format its content type names (a new object)."""
    if content_type == SMP:
        if not isinstance(body, dict):
            raise invalid("strategic merge patch: the body must be a JSON object")
        patched = strategic_merge(current, body)
    elif content_type == MERGE_PATCH:
        patched = merge_patch(current, body)
    elif content_type == JSON_PATCH:
        patched = json_patch(current, body)
    else:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH}, {MERGE_PATCH}, {SMP} (this stand-in has no server-side apply)",
        )
    if not isinstance(patched, dict):
        raise invalid("the patched object is not a JSON object")
    return copy.deepcopy(patched)


@dataclass(frozen=True)
class Change:
    """One change of one object: its resource version, type, and the object as it was then (a copy)."""

    version: int
    type: str
    resource: str
    namespace: str
    object: JSON
    previous_labels: dict[str, str] | None  # the labels before the change (None: a new object)


class ChangeLog:
    """The last `HISTORY` changes, as etcd keeps them until compaction, and the condition watches wait on."""

    def __init__(self, lock: threading.RLock, version: int, limit: int = HISTORY) -> None:
        self.changed = threading.Condition(lock)
        self.compacted = version  # the changes up to this version are no longer kept
        self.closed = False
        self.bookmark_interval = 60.0  # seconds between a watch's BOOKMARK events (the API server: about a minute)
        self._changes: deque[Change] = deque(maxlen=limit)
        self._labels: dict[Key, dict[str, str]] = {}  # of every object, as its last change left them

    def record(self, version: int, kind: str, resource: str, obj: JSON) -> None:
        """Keep a copy of `obj` as changed (`kind`: ADDED, MODIFIED or DELETED) at `version`; wake the watches."""
        meta = obj["metadata"]
        key = (resource, meta["namespace"], meta["name"])
        with self.changed:
            previous = self._labels.pop(key, None) if kind == DELETED else self._labels.get(key)
            if kind != DELETED:
                self._labels[key] = dict(meta.get("labels") or {})
            if len(self._changes) == self._changes.maxlen:
                self.compacted = self._changes[0].version
            self._changes.append(Change(version, kind, resource, key[1], copy.deepcopy(obj), previous))
            self.changed.notify_all()

    def since(self, version: int) -> list[Change] | None:
        """The changes after `version`, oldest first; None when some of them are no longer kept (call it holding
        `changed`)."""
        if version < self.compacted:
            return None
        newer = []
        for change in reversed(self._changes):
            if change.version <= version:
                break
            newer.append(change)
        return newer[::-1]

    def close(self) -> None:
        """End every watch (the stand-in stops)."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()


class Store(UserDict[Key, JSON]):
    """The objects by (resource, namespace, name). A removal, whoever makes it (`pop`, `del`, `clear`), is passed to
    `removed`: a Deployment's delete and the controller's pruning of old ReplicaSets are recorded alike."""

    def __init__(self, removed: Callable[[str, JSON], None]) -> None:
        super().__init__()
        self._removed = removed

    def __delitem__(self, key: Key) -> None:
        obj = self.data.pop(key)
        self._removed(key[0], obj)


class Backend:
    """Every object of the stand-in, keyed by (resource, namespace, name)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects = Store(self._deleted)
        self.pods: dict[tuple[str, str], Pod] = {}
        self.resource_version = 1000
        self.changes = ChangeLog(self.lock, self.resource_version)
        self.events = EventLog(self.lock, self._next_version)

    def reset(self) -> list[Pod]:
        """Forget every object (each recorded as DELETED); returns the pods that were running (for the kubelet to
        stop)."""
        with self.lock:
            pods = list(self.pods.values())
            self.objects.clear()
            for pod in pods:
                self._record_pod(pod, DELETED)
            self.pods.clear()
            return pods

    def _next_version(self) -> int:
        """Count one change (the caller records it)."""
        self.resource_version += 1
        return self.resource_version

    def bump(self, obj: JSON) -> None:
        """A change of a Deployment, ReplicaSet, Service or Secret, stored or about to be (ADDED if no object has
        its name yet): the next resource version."""
        meta = obj["metadata"]
        resource = RESOURCES[obj["kind"]]
        kind = MODIFIED if (resource, meta["namespace"], meta["name"]) in self.objects else ADDED
        meta["resourceVersion"] = str(self._next_version())
        self.changes.record(self.resource_version, kind, resource, obj)

    def _deleted(self, resource: str, obj: JSON) -> None:
        """An object left the store: its deletion is a change."""
        obj["metadata"]["resourceVersion"] = str(self._next_version())
        self.changes.record(self.resource_version, DELETED, resource, obj)

    def bump_pod(self, pod: Pod) -> None:
        """A change of a pod: ADDED when new, MODIFIED, or DELETED once it is gone (it leaves the store then). A pod
        no longer in the store (gone, or forgotten by `reset`) has no more changes."""
        if pod.resource_version == 0:
            self._record_pod(pod, ADDED)
        elif self.pods.get((pod.namespace, pod.name)) is not pod:
            return
        elif pod.gone:
            del self.pods[(pod.namespace, pod.name)]
            self._record_pod(pod, DELETED)
        else:
            self._record_pod(pod, MODIFIED)

    def _record_pod(self, pod: Pod, kind: str) -> None:
        pod.resource_version = self._next_version()
        self.changes.record(self.resource_version, kind, "pods", pod.to_json())

    # reading

    def get(self, resource: str, namespace: str, name: str) -> JSON:
        if resource == "pods":
            pod = self.pods.get((namespace, name))
            if pod is None or pod.gone:
                raise not_found(resource, name)
            return pod.to_json()
        try:
            return self.objects[(resource, namespace, name)]
        except KeyError:
            raise not_found(resource, name, GROUPS[resource]) from None

    def select(self, resource: str, namespace: str | None, selector: str | None) -> list[JSON]:
        requirements = parse_label_selector(selector) if selector else []
        if resource == "pods":
            found = [
                pod.to_json()
                for (ns, _), pod in sorted(self.pods.items())
                if not pod.gone and (namespace is None or ns == namespace) and matches(requirements, pod.labels)
            ]
            return found
        return [
            obj
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == resource
            and (namespace is None or ns == namespace)
            and matches(requirements, obj["metadata"].get("labels"))
        ]

    def owned(self, resource: str, namespace: str, owner: str) -> list[JSON]:
        """The objects of `resource` controlled by `owner`."""
        return [obj for obj in self.select(resource, namespace, None) if owner_of(obj) == owner]

    def pods_of(self, namespace: str, replicaset: str) -> list[Pod]:
        """The live (not terminating) pods of a ReplicaSet, oldest first: its replicas."""
        return [
            pod
            for (ns, _), pod in self.pods.items()
            if ns == namespace and pod.owner.get("name") == replicaset and not pod.deleting
        ]

    def terminating_of(self, namespace: str, replicaset: str) -> list[Pod]:
        """The pods of a ReplicaSet that were deleted and whose containers have not yet all exited."""
        return [
            pod
            for (ns, _), pod in self.pods.items()
            if ns == namespace and pod.owner.get("name") == replicaset and pod.deleting and not pod.gone
        ]

    def ready_endpoints(self, namespace: str, selector: JSON) -> list[Pod]:
        """Ready pods whose labels match a Service's selector."""
        return [
            pod
            for (ns, _), pod in sorted(self.pods.items())
            if ns == namespace and pod.ready and all(pod.labels.get(k) == v for k, v in selector.items())
        ]

    # Deployments

    def validate_deployment(self, obj: JSON, previous: JSON | None = None) -> None:
        meta, spec = obj.get("metadata") or {}, obj.get("spec")
        if not meta.get("name"):
            raise invalid("metadata.name: Required value")
        prefix = f'Deployment.apps "{meta["name"]}" is invalid: '
        if not isinstance(spec, dict):
            raise invalid(f"{prefix}spec: Required value")
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise invalid(f"{prefix}spec.template.spec.containers: Required value")
        for i, container in enumerate(containers):
            for required in ("name", "image"):
                if not isinstance(container, dict) or not container.get(required):
                    raise invalid(f"{prefix}spec.template.spec.containers[{i}].{required}: Required value")
        match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        template_labels = (spec["template"].get("metadata") or {}).get("labels") or {}
        if not match_labels or any(template_labels.get(k) != v for k, v in match_labels.items()):
            raise invalid(f"{prefix}spec.template.metadata.labels: `selector` does not match template `labels`")
        if previous is not None and previous["spec"]["selector"] != spec["selector"]:
            raise invalid(f"{prefix}spec.selector: field is immutable")
        if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) < 0:
            raise invalid(f"{prefix}spec.replicas: must be >= 0")

    def create_deployment(self, namespace: str, manifest: JSON) -> JSON:
        obj = copy.deepcopy(manifest)
        obj["apiVersion"], obj["kind"] = "apps/v1", "Deployment"
        meta = obj.setdefault("metadata", {})
        self.validate_deployment(obj)
        if ("deployments", namespace, meta["name"]) in self.objects:
            raise already_exists("deployments", meta["name"], "apps")
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), generation=1, creationTimestamp=now_text())
        spec = obj["spec"]
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("minReadySeconds", 0)
        spec.setdefault("strategy", {"type": "RollingUpdate"})
        if spec["strategy"].get("type", "RollingUpdate") == "RollingUpdate":
            spec["strategy"]["type"] = "RollingUpdate"
            rolling = spec["strategy"].setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
        pod_spec = spec["template"]["spec"]
        pod_spec.setdefault("restartPolicy", "Always")
        pod_spec.setdefault("terminationGracePeriodSeconds", 30)
        obj["status"] = {}
        self.bump(obj)
        self.objects[("deployments", namespace, meta["name"])] = obj
        return obj

    def patch_deployment(self, namespace: str, name: str, content_type: str, body: Any, dry_run: bool) -> JSON:
        current = self.get("deployments", namespace, name)
        patched = patched_copy(current, content_type, body)
        meta = patched.setdefault("metadata", {})  # the server owns these fields; status has its own subresource
        if meta.get("name") != name:
            raise invalid(f"metadata.name: Invalid value: {meta.get('name')!r}: the name of the object must not change")
        for owned in ("uid", "generation", "resourceVersion", "creationTimestamp", "namespace"):
            meta[owned] = current["metadata"][owned]
        patched["status"] = copy.deepcopy(current["status"])
        patched["apiVersion"], patched["kind"] = "apps/v1", "Deployment"
        self.validate_deployment(patched, previous=current)
        if patched == current:
            return current
        if patched["spec"] != current["spec"]:
            meta["generation"] = current["metadata"]["generation"] + 1
        if dry_run:
            return patched
        self.bump(patched)
        self.objects[("deployments", namespace, name)] = patched
        return patched

    def delete_deployment(self, namespace: str, name: str) -> JSON:
        obj = self.objects.pop(("deployments", namespace, name), None)
        if obj is None:
            raise not_found("deployments", name, "apps")
        for rs in self.owned("replicasets", namespace, name):
            self.objects.pop(("replicasets", namespace, rs["metadata"]["name"]), None)
            for pod in self.pods_of(namespace, rs["metadata"]["name"]):
                pod.terminate()
                self.bump_pod(pod)
        return obj

    # Pods

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None, dry_run: bool) -> JSON:
        """Delete a pod gracefully (`Pod.terminate`); the Pod as it is now (with its deletionTimestamp)."""
        pod = self.pods.get((namespace, name))
        if pod is None or pod.gone:
            raise not_found("pods", name)
        if dry_run:
            return pod.to_json()
        if pod.terminate(grace_seconds):
            self.bump_pod(pod)
        return pod.to_json()

    # Services

    def create_service(self, namespace: str, manifest: JSON) -> JSON:
        obj = copy.deepcopy(manifest)
        obj["apiVersion"], obj["kind"] = "v1", "Service"
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise invalid("metadata.name: Required value")
        ports = (obj.get("spec") or {}).get("ports")
        if not isinstance(ports, list) or not ports:
            raise invalid(f'Service "{meta["name"]}" is invalid: spec.ports: Required value')
        if ("services", namespace, meta["name"]) in self.objects:
            raise already_exists("services", meta["name"])
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now_text())
        obj["spec"].setdefault("type", "ClusterIP")
        obj["spec"].setdefault("clusterIP", "None")
        for port in ports:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj["status"] = {"loadBalancer": {}}
        self.bump(obj)
        self.objects[("services", namespace, meta["name"])] = obj
        return obj

    # Secrets

    def write_secret(self, namespace: str, manifest: JSON, previous: JSON | None = None, dry_run: bool = False) -> JSON:
        """Create a Secret, or replace `previous` (PUT, or the result of a PATCH) if given."""
        if not isinstance(manifest, dict):
            raise bad_request("a Secret must be a JSON object")
        obj = copy.deepcopy(manifest)
        obj["apiVersion"], obj["kind"] = "v1", "Secret"
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise invalid("metadata.name: Required value")
        normalize_secret(obj, previous)
        if previous is None:
            if ("secrets", namespace, name) in self.objects:
                raise already_exists("secrets", name)
            meta.pop("resourceVersion", None)
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now_text())
        else:
            if name != previous["metadata"]["name"]:
                raise invalid(f"metadata.name: Invalid value: {name!r}: the name of the object must not change")
            stated = meta.get("resourceVersion")
            if stated and stated != previous["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                    reason="Conflict",
                    details={"name": name, "kind": "secrets"},
                )
            for owned in ("uid", "resourceVersion", "creationTimestamp", "namespace"):
                meta[owned] = previous["metadata"][owned]
            if obj == previous:
                return previous
        if dry_run:
            return obj
        self.bump(obj)
        self.objects[("secrets", namespace, name)] = obj
        return obj

    def replace_secret(self, namespace: str, name: str, manifest: JSON, dry_run: bool) -> JSON:
        stated = (manifest.get("metadata") or {}).get("name") if isinstance(manifest, dict) else None
        if stated != name:
            raise bad_request(f"the name of the object ({stated}) does not match the name on the URL ({name})")
        return self.write_secret(namespace, manifest, self.get("secrets", namespace, name), dry_run)

    def patch_secret(self, namespace: str, name: str, content_type: str, body: Any, dry_run: bool) -> JSON:
        current = self.get("secrets", namespace, name)
        return self.write_secret(namespace, patched_copy(current, content_type, body), current, dry_run)

    def find_secret(self, namespace: str, name: str) -> JSON | None:
        """A copy of a Secret, or None (the kubelet's read)."""
        with self.lock:
            found = self.objects.get(("secrets", namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def delete_secret(self, namespace: str, name: str) -> JSON:
        obj = self.objects.pop(("secrets", namespace, name), None)
        if obj is None:
            raise not_found("secrets", name)
        return obj
