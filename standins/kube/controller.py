"""The deployment and replica-set controllers: ReplicaSets per pod template, rolling updates, status; and the
disruption controller's status of PodDisruptionBudgets.

It follows kube-controller-manager's rules: one ReplicaSet per pod-template hash with revision annotations
(an older template's ReplicaSet is reused on rollback and becomes the newest revision), scale-up within
`maxSurge`, scale-down of unhealthy old pods first and then of available ones within `maxUnavailable`,
`minReadySeconds` before a pod counts as available, `status.observedGeneration` and the replica counts,
and the `Available` / `Progressing` conditions (`NewReplicaSetAvailable`, `ProgressDeadlineExceeded`).
Scaled-down pods are deleted gracefully (`Pod.terminate`): a terminating pod is no replica and not available, and a
rolling update does not wait for it to finish; `Recreate` does, as it promises no overlap of old and new pods.
The pods themselves are run by the kubelet (`standins.kube.kubelet`). The controllers record the events theirs
record (ScalingReplicaSet on the Deployment, SuccessfulCreate / SuccessfulDelete on the ReplicaSet, and the
scheduler's Scheduled on each new pod; `standins.kube.events`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from standins.kube.events import NODE_NAME, reference
from standins.kube.exceptions import invalid
from standins.kube.kubelet import Kubelet
from standins.kube.models import REVISION_ANNOTATION, Backend
from standins.kube.pods import Pod, now_text
from standins.kube.selectors import label_selector, matches

JSON = dict[str, Any]
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: JSON) -> str:
    """The `pod-template-hash` label of a pod template."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:10])


def resolve(value: Any, replicas: int, *, round_up: bool) -> int:
    """`maxSurge` / `maxUnavailable`: a number, or a percentage of the replicas."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    raise invalid(f"spec.strategy.rollingUpdate: invalid value {value!r}")


def _drop_zero(status: JSON) -> JSON:
    """The API server omits zero counts (`omitempty`); clients must read a missing count as 0."""
    return {k: v for k, v in status.items() if v not in (0, None)}


def _controlled_by(owner: JSON) -> JSON:
    """The `ownerReferences` entry that makes `owner` (an apps/v1 object) the controller."""
    meta = owner["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _revision(rs: JSON) -> int:
    return int(rs["metadata"]["annotations"][REVISION_ANNOTATION])


@dataclass
class _Progress:
    """Controller-side memory of one Deployment: when it last made progress."""

    last: float = field(default_factory=time.monotonic)
    available: int = 0


class Controller:
    """Reconciles every Deployment and PodDisruptionBudget of the backend; `step()` is one pass (a thread calls it
    periodically)."""

    def __init__(self, backend: Backend, kubelet: Kubelet, progress_deadline: float | None = None) -> None:
        self.backend = backend
        self.kubelet = kubelet
        self.progress_deadline = progress_deadline
        self._progress: dict[tuple[str, str], _Progress] = {}

    def step(self) -> None:
        """One pass over every Deployment and PodDisruptionBudget; forget pods whose containers are gone."""
        with self.backend.lock:
            for key, pod in list(self.backend.pods.items()):
                if pod.gone:
                    del self.backend.pods[key]
            for (kind, ns, name), obj in list(self.backend.objects.items()):
                if kind == "deployments":
                    self._reconcile(ns, name, obj)
                elif kind == "poddisruptionbudgets":
                    self._disruption_budget(ns, obj)

    def complete(self, namespace: str, name: str) -> bool:
        """The Deployment's rollout has finished (every replica updated and available)."""
        with self.backend.lock:
            deployment = self.backend.objects[("deployments", namespace, name)]
            status, desired = deployment["status"], deployment["spec"]["replicas"]
            return bool(
                status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
                and status.get("updatedReplicas", 0) == desired
                and status.get("replicas", 0) == desired
                and status.get("availableReplicas", 0) == desired
            )

    def _disruption_budget(self, ns: str, budget: JSON) -> None:
        """The disruption controller's status of a PodDisruptionBudget. Its expected pods are the live pods its
        selector matches (kube-controller-manager counts their controllers' scale for a percentage or
        `maxUnavailable`), the ready ones are healthy, and disruptions are allowed beyond the desired healthy count.
        No selector selects no pod; an empty one, every pod of the namespace."""
        spec, selector = budget["spec"], budget["spec"].get("selector")
        requirements = label_selector(selector) if selector is not None else None
        pods = [
            pod
            for (pod_ns, _), pod in self.backend.pods.items()
            if pod_ns == ns and requirements is not None and not pod.deleting and matches(requirements, pod.labels)
        ]
        expected, healthy = len(pods), sum(pod.ready for pod in pods)
        if "maxUnavailable" in spec:
            desired = max(0, expected - resolve(spec["maxUnavailable"], expected, round_up=True))
        elif "minAvailable" in spec:
            desired = resolve(spec["minAvailable"], expected, round_up=True)
        else:
            expected = desired = 0
        status = {
            "observedGeneration": budget["metadata"]["generation"],
            "disruptionsAllowed": max(0, healthy - desired) if expected > 0 else 0,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
        }
        if budget["status"] != status:
            budget["status"] = status
            self.backend.bump(budget)

    # one Deployment

    def _available(self, deployment: JSON, pods: list[Pod]) -> int:
        min_ready = float(deployment["spec"].get("minReadySeconds", 0))
        now = time.monotonic()
        return sum(pod.available(min_ready, now) for pod in pods)

    def _reconcile(self, ns: str, name: str, deployment: JSON) -> None:
        before = copy.deepcopy(deployment)
        progress = self._progress.setdefault((ns, name), _Progress())
        spec, status = deployment["spec"], deployment["status"]
        owned = self.backend.owned("replicasets", ns, name)
        revision = max((_revision(rs) for rs in owned), default=0)
        wanted_hash = template_hash(spec["template"])
        new_rs = next((rs for rs in owned if rs["metadata"]["labels"]["pod-template-hash"] == wanted_hash), None)
        progressed, reason, message = False, "ReplicaSetUpdated", ""
        if new_rs is None:
            new_rs = self._create_replicaset(ns, deployment, revision + 1)
            revision += 1
            progressed, reason = True, "NewReplicaSetCreated"
            message = f'Created new replica set "{new_rs["metadata"]["name"]}"'
        elif _revision(new_rs) != revision:  # a rollback reuses an older ReplicaSet: it becomes the newest
            revision += 1
            new_rs["metadata"]["annotations"][REVISION_ANNOTATION] = str(revision)
            progressed, reason = True, "FoundNewReplicaSet"
            message = f'Found new replica set "{new_rs["metadata"]["name"]}"'
        deployment["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(revision)
        if status.get("observedGeneration", 0) < deployment["metadata"]["generation"]:
            status["observedGeneration"] = deployment["metadata"]["generation"]
            progressed = True
        rs_name = new_rs["metadata"]["name"]
        if not spec.get("paused"):
            progressed |= self._scale(ns, deployment, new_rs)
        owned = self.backend.owned("replicasets", ns, name)
        available = self._available(deployment, self.backend.pods_of(ns, rs_name))
        if available > progress.available:
            progressed = True
        progress.available = available
        self._prune_history(ns, deployment, owned, new_rs)
        self._update_replicaset_status(ns, deployment, owned)
        self._update_status(ns, deployment, new_rs, owned)
        now = time.monotonic()
        if progressed:
            progress.last = now
        if self.complete(ns, name):
            self._set_condition(
                deployment,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif progressed:
            text = message or f'ReplicaSet "{rs_name}" is progressing.'
            self._set_condition(deployment, "Progressing", "True", reason, text)
        elif now - progress.last > self._deadline(spec):
            self._set_condition(
                deployment,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        if deployment != before:
            self.backend.bump(deployment)

    def _deadline(self, spec: JSON) -> float:
        return float(self.progress_deadline if self.progress_deadline is not None else spec["progressDeadlineSeconds"])

    def _create_replicaset(self, ns: str, deployment: JSON, revision: int) -> JSON:
        template = copy.deepcopy(deployment["spec"]["template"])
        pod_hash = template_hash(template)
        labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": pod_hash}
        template.setdefault("metadata", {})["labels"] = labels
        name = f"{deployment['metadata']['name']}-{pod_hash}"
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        rs: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": now_text(),
                "labels": labels,
                "annotations": {
                    REVISION_ANNOTATION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(deployment["spec"]["replicas"]),
                },
                "ownerReferences": [_controlled_by(deployment)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": deployment["spec"].get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        self.backend.bump(rs)
        self.backend.objects[("replicasets", ns, name)] = rs
        return rs

    def _new_pod(self, ns: str, rs: JSON) -> None:
        template = rs["spec"]["template"]
        name = f"{rs['metadata']['name']}-{''.join(secrets.choice(_SAFE_ALPHABET) for _ in range(5))}"
        pod = Pod(ns, name, dict(template["metadata"]["labels"]), _controlled_by(rs), copy.deepcopy(template["spec"]))
        self.backend.bump_pod(pod)
        self.backend.pods[(ns, name)] = pod
        events = self.backend.events
        events.record(reference(rs), "Normal", "SuccessfulCreate", f"Created pod: {name}", "replicaset-controller")
        assigned = f"Successfully assigned {ns}/{name} to {NODE_NAME}"
        events.record(pod.reference(), "Normal", "Scheduled", assigned, "default-scheduler")
        self.kubelet.run(pod)

    def _scale(self, ns: str, deployment: JSON, new_rs: JSON) -> bool:
        """One rolling-update pass (kube-controller-manager's reconcileNewReplicaSet / reconcileOldReplicaSets)."""
        spec = deployment["spec"]
        desired = spec["replicas"]
        new_pods = self.backend.pods_of(ns, new_rs["metadata"]["name"])
        old_pods = [
            pod
            for rs in self.backend.owned("replicasets", ns, deployment["metadata"]["name"])
            if rs is not new_rs
            for pod in self.backend.pods_of(ns, rs["metadata"]["name"])
        ]
        if spec["strategy"].get("type") == "Recreate":
            if old_pods:  # every old pod goes before any new one starts
                for pod in old_pods:
                    self._delete_pod(pod)
                return True
            old_sets = self.backend.owned("replicasets", ns, deployment["metadata"]["name"])
            if any(self.backend.terminating_of(ns, rs["metadata"]["name"]) for rs in old_sets if rs is not new_rs):
                return False  # and has stopped: kube-controller-manager's oldPodsRunning
            max_surge, max_unavailable = 0, desired
        else:
            rolling = spec["strategy"].get("rollingUpdate") or {}
            max_surge = resolve(rolling.get("maxSurge", "25%"), desired, round_up=True)
            max_unavailable = resolve(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
            if max_surge == 0 and max_unavailable == 0:
                max_unavailable = 1
        moved = False
        total = len(new_pods) + len(old_pods)
        if len(new_pods) > desired:
            for pod in new_pods[desired:]:
                self._delete_pod(pod)
            moved = True
        elif len(new_pods) < desired:
            for _ in range(min(desired - len(new_pods), desired + max_surge - total)):
                self._new_pod(ns, new_rs)
                moved = True
        new_pods = self.backend.pods_of(ns, new_rs["metadata"]["name"])
        new_unavailable = len(new_pods) - self._available(deployment, new_pods)
        allowed = len(new_pods) + len(old_pods) - (desired - max_unavailable) - new_unavailable
        min_ready, now = float(spec.get("minReadySeconds", 0)), time.monotonic()
        unhealthy = [pod for pod in old_pods if not pod.available(min_ready, now)]
        healthy = [pod for pod in old_pods if pod.available(min_ready, now)]
        for pod in [*unhealthy, *reversed(healthy)][: max(0, allowed)]:
            self._delete_pod(pod)
            moved = True
        return moved

    def _delete_pod(self, pod: Pod) -> None:
        """The ReplicaSet controller's delete: graceful, with the pod's own grace period."""
        if pod.terminate():
            self.backend.bump_pod(pod)
            owner = {key: pod.owner[key] for key in ("kind", "name", "uid", "apiVersion")} | {
                "namespace": pod.namespace
            }
            message = f"Deleted pod: {pod.name}"
            self.backend.events.record(owner, "Normal", "SuccessfulDelete", message, "replicaset-controller")

    def _prune_history(self, ns: str, deployment: JSON, owned: list[JSON], new_rs: JSON) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in owned if rs is not new_rs and not self.backend.pods_of(ns, rs["metadata"]["name"])]
        idle.sort(key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            self.backend.objects.pop(("replicasets", ns, rs["metadata"]["name"]), None)

    def _update_replicaset_status(self, ns: str, deployment: JSON, owned: list[JSON]) -> None:
        for rs in owned:
            if ("replicasets", ns, rs["metadata"]["name"]) not in self.backend.objects:
                continue
            before = copy.deepcopy(rs)
            pods = self.backend.pods_of(ns, rs["metadata"]["name"])
            if rs["spec"]["replicas"] != len(pods):
                way = "up" if len(pods) > rs["spec"]["replicas"] else "down"
                message = (
                    f"Scaled {way} replica set {rs['metadata']['name']} from {rs['spec']['replicas']} to {len(pods)}"
                )
                self.backend.events.record(
                    reference(deployment), "Normal", "ScalingReplicaSet", message, "deployment-controller"
                )
            rs["spec"]["replicas"] = len(pods)
            rs["status"] = {"replicas": len(pods)} | _drop_zero(  # ReplicaSetStatus.replicas has no omitempty
                {
                    "fullyLabeledReplicas": len(pods),
                    "readyReplicas": sum(pod.ready for pod in pods),
                    "availableReplicas": self._available(deployment, pods),
                    "observedGeneration": rs["metadata"]["generation"],
                }
            )
            if rs != before:
                self.backend.bump(rs)

    def _update_status(self, ns: str, deployment: JSON, new_rs: JSON, owned: list[JSON]) -> None:
        desired = deployment["spec"]["replicas"]
        pods = [pod for rs in owned for pod in self.backend.pods_of(ns, rs["metadata"]["name"])]
        available = self._available(deployment, pods)
        status = deployment["status"]
        conditions = status.get("conditions", [])
        strategy = deployment["spec"]["strategy"]
        rolling = strategy.get("rollingUpdate") or {}
        max_unavailable = (
            desired
            if strategy.get("type") == "Recreate"
            else resolve(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        )
        deployment["status"] = _drop_zero(
            {
                "observedGeneration": status.get("observedGeneration"),
                "replicas": len(pods),
                "updatedReplicas": len(self.backend.pods_of(ns, new_rs["metadata"]["name"])),
                "readyReplicas": sum(pod.ready for pod in pods),
                "availableReplicas": available,
                "unavailableReplicas": max(0, desired - available),
            }
        )
        deployment["status"]["conditions"] = conditions
        if available >= desired - max_unavailable:
            self._set_condition(
                deployment, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
        else:
            self._set_condition(
                deployment,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )

    @staticmethod
    def _set_condition(deployment: JSON, kind: str, status: str, reason: str, message: str) -> None:
        conditions: list[JSON] = deployment["status"].setdefault("conditions", [])
        existing = next((c for c in conditions if c["type"] == kind), None)
        if existing and (existing["status"], existing["reason"], existing["message"]) == (status, reason, message):
            return
        now = now_text()
        if existing is None:
            existing = {"type": kind, "lastTransitionTime": now}
            conditions.append(existing)
            conditions.sort(key=lambda c: c["type"])
        elif existing["status"] != status:
            existing["lastTransitionTime"] = now
        existing.update(status=status, reason=reason, message=message, lastUpdateTime=now)
