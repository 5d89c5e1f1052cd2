"""The stand-in's store: Deployments and ReplicaSets (apps/v1), Services, Pods, Secrets, ConfigMaps, ServiceAccounts
and Events (v1), PodDisruptionBudgets (policy/v1).

One `Backend` holds every object, the resource version counter and the lock that the HTTP handlers, the
controller and the kubelet share; `reset()` empties it in one call. Every change that bumps the resource version
is recorded in its `ChangeLog` (ADDED, MODIFIED, DELETED), which watches read (`standins.kube.watch`), events' too.
A client's write of a `WRITABLE` kind takes one path (`Backend.write`): decoded against the schema
(`standins.kube.schema`), defaulted, validated (`standins.kube.validation`) and refused with 409 Conflict when it names
a `metadata.resourceVersion` other than the stored one; `metadata.generation` moves only when the spec does.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import UserDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standins.kube.events import EventLog
from standins.kube.exceptions import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    invalid,
    invalid_object,
    not_found,
)
from standins.kube.patches import json_patch, merge_patch, strategic_merge
from standins.kube.pods import Pod, now_text
from standins.kube.schema import decode
from standins.kube.secretdata import configmap_causes, normalize_secret
from standins.kube.selectors import matches, parse_label_selector
from standins.kube.validation import (
    IMMUTABLE,
    deployment_causes,
    disruption_budget_causes,
    name_causes,
    service_causes,
)

JSON = dict[str, Any]

SMP = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
GROUPS = {
    "deployments": "apps",
    "replicasets": "apps",
    "services": "",
    "pods": "",
    "secrets": "",
    "events": "",
    "configmaps": "",
    "serviceaccounts": "",
    "poddisruptionbudgets": "policy",
}
KINDS = {
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "pods": "Pod",
    "services": "Service",
    "secrets": "Secret",
    "events": "Event",
    "configmaps": "ConfigMap",
    "serviceaccounts": "ServiceAccount",
    "poddisruptionbudgets": "PodDisruptionBudget",
}
API_VERSIONS = {resource: f"{group}/v1" if group else "v1" for resource, group in GROUPS.items()}
RESOURCES = {kind: resource for resource, kind in KINDS.items()}
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
#: How many changes the log keeps: a watch from an older resource version gets 410 Gone, as after etcd's compaction.
HISTORY = 1000
Key = tuple[str, str, str]
#: The metadata the API server sets, never a client: a new object gets its own, a write keeps the stored one's.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp")


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


@dataclass
class Write:
    """How a client's write is made: `dryRun=All`, its `fieldValidation`, and the warnings it earns (for the
    `Warning` header)."""

    dry_run: bool = False
    field_validation: str | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, query: dict[str, str]) -> Write:
        """The options of a request's query."""
        return cls(dry_run=query.get("dryRun") == "All", field_validation=query.get("fieldValidation"))


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
        self.events = EventLog(self.lock, self._event_changed)

    def reset(self) -> list[Pod]:
        """Forget every object and event (each recorded as DELETED); returns the pods that were running (for the
        kubelet to stop)."""
        with self.lock:
            pods = list(self.pods.values())
            self.objects.clear()
            self.events.clear()
            for pod in pods:
                self._record_pod(pod, DELETED)
            self.pods.clear()
            return pods

    def _next_version(self) -> int:
        """Count one change (the caller records it)."""
        self.resource_version += 1
        return self.resource_version

    def bump(self, obj: JSON) -> None:
        """A change of a stored object (any kind but pods and events), stored or about to be (ADDED if no object has
        its name yet): the next resource version."""
        meta = obj["metadata"]
        resource = RESOURCES[obj["kind"]]
        kind = MODIFIED if (resource, meta["namespace"], meta["name"]) in self.objects else ADDED
        meta["resourceVersion"] = str(self._next_version())
        self.changes.record(self.resource_version, kind, resource, obj)

    def _event_changed(self, kind: str, event: JSON) -> None:
        """An event was recorded, counted again or dropped: a change like any other."""
        event["metadata"]["resourceVersion"] = str(self._next_version())
        self.changes.record(self.resource_version, kind, "events", event)

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
        if resource == "events":
            event = self.events.get(namespace, name)
            if event is None:
                raise not_found(resource, name)
            return event
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
        if resource == "events":
            return [e for e in self.events.select(namespace) if matches(requirements, e["metadata"].get("labels"))]
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

    # writes of the stored kinds

    def _decoded(
        self, manifest: Any, api_version: str, kind: str, namespace: str, write: Write
    ) -> tuple[JSON, list[Cause]]:
        """A client's object decoded against its schema (`standins.kube.schema.decode`), in the URL's namespace."""
        if not isinstance(manifest, dict):
            raise bad_request(f"the body of a {kind} must be a JSON object")
        stated = (manifest.get("metadata") or {}).get("namespace")
        if stated not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        obj, warnings, causes = decode({**manifest, "apiVersion": api_version, "kind": kind}, write.field_validation)
        write.warnings += warnings
        obj.setdefault("metadata", {})
        return obj, causes

    def write(
        self, resource: str, namespace: str, manifest: Any, previous: JSON | None = None, write: Write | None = None
    ) -> JSON:
        """Create an object of a writable kind (`WRITABLE`), or store it in place of `previous` (PUT, or the result of
        a PATCH): decoded, defaulted and validated (422); 409 if the name is taken or `metadata.resourceVersion` is
        not `previous`'s. The server's own metadata and the status are kept; a write that changes nothing stores
        nothing."""
        write = write or Write()
        stored, kind, group = WRITABLE[resource], KINDS[resource], GROUPS[resource]
        obj, causes = self._decoded(manifest, API_VERSIONS[resource], kind, namespace, write)
        meta = obj["metadata"]
        if previous is None:
            owned: JSON = {"namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": now_text()}
            owned |= {"generation": 1} if stored.generation else {}
            status = copy.deepcopy(stored.status)
        else:
            before = previous["metadata"]
            if meta.get("resourceVersion") not in (None, before["resourceVersion"]):
                raise conflict(resource, before["name"], group)
            if meta.get("name") != before["name"]:
                causes.append(Cause.invalid("metadata.name", meta.get("name"), IMMUTABLE))
            owned = {key: value for key, value in before.items() if key in (*_SERVER_METADATA, "name", "namespace")}
            status = copy.deepcopy(previous.get("status"))
        for key in _SERVER_METADATA:
            meta.pop(key, None)
        meta.update(owned)
        obj.pop("status", None)
        if status is not None:
            obj["status"] = status
        name = meta.get("name", "")
        _refuse(kind, name, causes + name_causes(meta) + stored.prepare(obj, previous), group)
        if previous is None and (resource, namespace, name) in self.objects:
            raise already_exists(resource, name, group)
        if obj == previous:
            return previous
        if previous is not None and stored.generation and obj.get("spec") != previous.get("spec"):
            meta["generation"] = previous["metadata"]["generation"] + 1
        if write.dry_run:
            return obj
        self.bump(obj)
        self.objects[(resource, namespace, name)] = obj
        return obj

    def replace(self, resource: str, namespace: str, name: str, manifest: Any, write: Write) -> JSON:
        """PUT: the whole object (status aside) replaced, if `metadata.resourceVersion` is absent or current."""
        current = self.get(resource, namespace, name)
        stated = (manifest.get("metadata") or {}).get("name") if isinstance(manifest, dict) else None
        if stated != name:
            raise bad_request(f"the name of the object ({stated}) does not match the name on the URL ({name})")
        return self.write(resource, namespace, manifest, current, write)

    def patch(self, resource: str, namespace: str, name: str, content_type: str, body: Any, write: Write) -> JSON:
        """PATCH: the stored object with the patch applied, written as a PUT of the result would be."""
        current = self.get(resource, namespace, name)
        return self.write(resource, namespace, patched_copy(current, content_type, body), current, write)

    def delete(self, resource: str, namespace: str, name: str) -> JSON:
        """Delete an object of a writable kind; a Deployment's ReplicaSets go with it and their pods terminate."""
        obj = self.objects.pop((resource, namespace, name), None)
        if obj is None:
            raise not_found(resource, name, GROUPS[resource])
        for rs in self.owned("replicasets", namespace, name) if resource == "deployments" else []:
            self.objects.pop(("replicasets", namespace, rs["metadata"]["name"]), None)
            for pod in self.pods_of(namespace, rs["metadata"]["name"]):
                pod.terminate()
                self.bump_pod(pod)
        return obj

    def find_secret(self, namespace: str, name: str) -> JSON | None:
        """A copy of a Secret, or None (the kubelet's read)."""
        with self.lock:
            found = self.objects.get(("secrets", namespace, name))
            return copy.deepcopy(found) if found is not None else None

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


def _deployment_defaults(obj: JSON) -> None:
    """The API server's defaults for a Deployment (SetDefaults_Deployment and the pod spec's), in place. Not the
    containers' (terminationMessagePath, imagePullPolicy, ...): clients' tests compare containers as they wrote them."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    pod_spec = spec.setdefault("template", {}).setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("securityContext", {})


def _service_defaults(obj: JSON) -> None:
    """The API server's defaults for a Service (a headless ClusterIP here: the stand-in allocates no addresses)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("clusterIP", "None")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


def _refuse(kind: str, name: str, causes: list[Cause], group: str = "") -> None:
    """422 `Invalid` if there is any cause (each field error once)."""
    unique = list(dict.fromkeys(causes))
    if unique:
        raise invalid_object(kind, name, unique, group)


def _deployment(obj: JSON, previous: JSON | None) -> list[Cause]:
    _deployment_defaults(obj)
    return deployment_causes(obj, previous)


def _service(obj: JSON, previous: JSON | None) -> list[Cause]:
    _service_defaults(obj)
    return service_causes(obj)


def _disruption_budget(obj: JSON, previous: JSON | None) -> list[Cause]:
    return disruption_budget_causes(obj)


def _no_checks(obj: JSON, previous: JSON | None) -> list[Cause]:
    return []


@dataclass(frozen=True)
class Writable:
    """What the API server does with a client's object of one kind: `prepare` sets its defaults (in place) and gives
    its field errors beyond the name (`previous`: the stored object, on an update); `status`, a new object's status
    (None: the kind has none); `generation`, whether `metadata.generation` counts the changes of its spec."""

    prepare: Callable[[JSON, JSON | None], list[Cause]]
    status: JSON | None = None
    generation: bool = False


#: The kinds clients create, replace, patch and delete, by resource.
WRITABLE = {
    "deployments": Writable(_deployment, status={}, generation=True),
    "services": Writable(_service, status={"loadBalancer": {}}),
    "secrets": Writable(normalize_secret),
    "configmaps": Writable(configmap_causes),
    "serviceaccounts": Writable(_no_checks),
    "poddisruptionbudgets": Writable(
        _disruption_budget,
        # what PrepareForCreate leaves (these counts have no omitempty); the controller fills them in
        status={"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0},
        generation=True,
    ),
}
