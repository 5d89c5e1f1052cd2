"""Watch a rollout as `kubectl rollout status` does, and say why its pods are not ready.

`rollout_status` follows kubectl's order and words (kubernetes/kubectl
`pkg/polymorphichelpers/rollout_status.go`); `wait_for_rollout` polls it for each Deployment until done,
failed or out of time; `pod_problems` names what the kubelet reports (pull errors, crash loops). Nothing here
knows Prefect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubernetes.client import AppsV1Api, CoreV1Api, V1Deployment, V1Pod

from oncology_pipeline.errors import RolloutFailed, TransientError
from oncology_pipeline.kubeapi import calling, deployment_name, read_deployment

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"

Log = Callable[[str], None]


def no_log(message: str) -> None:
    """The default log: drop the message."""


@dataclass(frozen=True)
class RolloutState:
    """Where one Deployment's rollout stands, as `kubectl rollout status` would say it."""

    deployment: str
    done: bool
    failed: bool
    message: str


def rollout_status(deployment: V1Deployment) -> RolloutState:
    """`kubectl rollout status`'s rule for one Deployment, with its messages."""
    name = deployment_name(deployment)
    generation = (deployment.metadata.generation if deployment.metadata else None) or 0
    status = deployment.status
    observed = (status.observed_generation if status else None) or 0
    if status is None or generation > observed:
        return RolloutState(name, False, False, "Waiting for deployment spec update to be observed...")
    progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == PROGRESS_DEADLINE_EXCEEDED:
        detail = f" ({progressing.message})" if progressing.message else ""
        return RolloutState(name, False, True, f'deployment "{name}" exceeded its progress deadline{detail}')
    wanted = deployment.spec.replicas
    updated = status.updated_replicas or 0
    total = status.replicas or 0
    available = status.available_replicas or 0
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if wanted is not None and updated < wanted:
        return RolloutState(name, False, False, f"{waiting}{updated} out of {wanted} new replicas have been updated...")
    if total > updated:
        return RolloutState(name, False, False, f"{waiting}{total - updated} old replicas are pending termination...")
    if available < updated:
        return RolloutState(name, False, False, f"{waiting}{available} of {updated} updated replicas are available...")
    return RolloutState(name, True, False, f'deployment "{name}" successfully rolled out')


def wait_for_rollout(
    apps: AppsV1Api,
    namespace: str,
    names: Sequence[str],
    timeout: float,
    poll: float = 2.0,
    log: Log = no_log,
    *,
    request_timeout: float,
) -> dict[str, V1Deployment]:
    """Poll until every named Deployment has rolled out; `RolloutFailed` on a passed deadline or timeout.

    Each new status message goes to `log`. Transient read errors (a read that timed out after `request_timeout`
    included) are logged and polled through; the deadline is checked between rounds of reads, so a hung API server
    can hold the wait up to one `request_timeout` per pending Deployment past it. Returns each Deployment as it was
    read when it had rolled out.
    """
    pending = list(dict.fromkeys(names))
    rolled_out: dict[str, V1Deployment] = {}
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout

    def report(name: str, message: str) -> None:
        if last.get(name) != message:
            last[name] = message
            log(message)

    while True:
        for name in list(pending):
            try:
                deployment = read_deployment(apps, namespace, name, request_timeout=request_timeout)
            except TransientError as exc:
                report(name, f"{exc} (still waiting)")
                continue
            state = rollout_status(deployment)
            report(name, state.message)
            if state.failed:
                raise RolloutFailed(f"Rollout failed in namespace {namespace!r}: {state.message}.")
            if state.done:
                pending.remove(name)
                rolled_out[name] = deployment
        if not pending:
            return rolled_out
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            waiting = "; ".join(last.get(name, "no status read") for name in pending)
            raise RolloutFailed(
                f"Rollout of {', '.join(pending)} in namespace {namespace!r} did not finish within "
                f"{timeout:g} s: {waiting}"
            )
        time.sleep(min(poll, remaining))


def revision(deployment: V1Deployment) -> str:
    """The Deployment's current ReplicaSet revision (`deployment.kubernetes.io/revision`)."""
    annotations = (deployment.metadata.annotations if deployment.metadata else None) or {}
    return str(annotations.get("deployment.kubernetes.io/revision", "?"))


def _pod_problem(pod: V1Pod) -> str | None:
    """Why a pod is not ready, in the kubelet's words (waiting reason, or the last termination)."""
    name = pod.metadata.name if pod.metadata else "<pod>"
    for status in (pod.status.container_statuses if pod.status else None) or []:
        if status.ready:
            continue
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason not in (None, "ContainerCreating"):
            detail = f": {waiting.message}" if waiting.message else ""
            return f"pod {name}: {waiting.reason}{detail} (restarts: {status.restart_count})"
        terminated = status.last_state.terminated if status.last_state else None
        if terminated is not None:
            code, reason = terminated.exit_code, terminated.reason
            return f"pod {name}: exited with code {code} ({reason}); restarts: {status.restart_count}"
    return None


def pod_problems(
    core: CoreV1Api, apps: AppsV1Api, namespace: str, names: Sequence[str], *, request_timeout: float
) -> list[str]:
    """Why the pods of the named Deployments are not ready (pull errors, crash loops), one line per pod."""
    problems: list[str] = []
    for name in names:
        deployment = read_deployment(apps, namespace, name, request_timeout=request_timeout)
        labels = deployment.spec.selector.match_labels or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        with calling(f"list the pods of deployment {name!r} in namespace {namespace!r}"):
            pods = core.list_namespaced_pod(namespace, label_selector=selector, _request_timeout=request_timeout).items
        problems += [problem for pod in pods if (problem := _pod_problem(pod))]
    return problems
