"""The stand-in's store: Deployments and ReplicaSets (apps/v1), Services, Pods and Secrets (v1), with validation.

One `Backend` holds every object, the resource version counter and the lock that the HTTP handlers, the
controller and the kubelet share; `reset()` empties it in one call.
"""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

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


class Backend:
    """Every object of the stand-in, keyed by (resource, namespace, name)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        self.resource_version = 1000

    def reset(self) -> list[Pod]:
        """Forget every object; returns the pods that were running (for the kubelet to stop)."""
        with self.lock:
            pods = list(self.pods.values())
            self.objects.clear()
            self.pods.clear()
            return pods

    def bump(self, obj: JSON) -> None:
        """A change: the next resource version."""
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)

    def bump_pod(self, pod: Pod) -> None:
        """A change of a pod's status."""
        self.resource_version += 1
        pod.resource_version = self.resource_version

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
