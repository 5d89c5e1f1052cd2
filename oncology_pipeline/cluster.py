"""Deploy stage: point the web service's Deployments at a new image, watch the rollout, put the old one back.

The seed ran `kubectl set image deployments -l app=oncology-webservice,team=<team> oncology-webservice=<image>`
and forgot about it. Here the same patch goes through the official client, the image is pinned by digest,
the rollout is watched with `kubectl rollout status`'s rule, and the previous image is restored when the
rollout fails. One function per verb, the API object first; nothing here knows Prefect.

Connect with `connect_kubeconfig` (any kubeconfig context: kind, minikube, k3d, EKS via `aws eks
update-kubeconfig`), `connect_in_cluster`, or `oncology_pipeline.eks.connect_eks`; then
`apps = AppsV1Api(api_client)`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, Configuration, CoreV1Api, V1Container, V1Deployment, V1Pod
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException, load_incluster_config, new_client_from_config
from urllib3.exceptions import HTTPError as TransportError

from oncology_pipeline.errors import (
    ClusterError,
    ConfigurationError,
    PipelineError,
    RolloutFailed,
    TransientError,
    is_transient,
)

WEBSERVICE_APP = "oncology-webservice"
WEBSERVICE_CONTAINER = "oncology-webservice"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"

_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:]*@sha256:[0-9a-f]{64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NOT_RESTORED = "COULD NOT restore"
_RESTORE_ATTEMPTS = 3
_RESTORE_BACKOFF = 0.5  # seconds, doubled per attempt

Log = Callable[[str], None]


def _ignore(message: str) -> None:
    """The default log: drop the message."""


@dataclass(frozen=True)
class ImageChange:
    """One Deployment's container image, before and after a patch."""

    deployment: str
    previous_image: str
    new_image: str
    generation: int
    previous_annotations: tuple[tuple[str, str | None], ...] = ()

    @property
    def changed(self) -> bool:
        """The patch changed something that a rollback must put back (the image or annotations)."""
        return self.previous_image != self.new_image or bool(self.previous_annotations)


@dataclass(frozen=True)
class RolloutState:
    """Where one Deployment's rollout stands, as `kubectl rollout status` would say it."""

    deployment: str
    done: bool
    failed: bool
    message: str


# --- images and selectors ---------------------------------------------------------------------------


def webservice_selector(team: str) -> str:
    """The seed's label selector: `app=oncology-webservice,team=<team>`."""
    return f"app={WEBSERVICE_APP},team={team}"


def is_pinned(image: str) -> bool:
    """True for `<registry>/<repository>@sha256:<64 hex>`."""
    return bool(_PINNED.match(image))


def pin_image(repository: str, digest: str) -> str:
    """`<registry>/<repository>@<digest>`; a tag on the repository is dropped (the digest decides)."""
    if not _DIGEST.match(digest):
        raise ConfigurationError(f"Image digest {digest!r} is not sha256:<64 hex>: pass the digest the push reported.")
    name = repository.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    image = f"{name}@{digest}"
    if not is_pinned(image):
        raise ConfigurationError(f"Repository {repository!r} does not make a valid image reference.")
    return image


# --- connections ------------------------------------------------------------------------------------


def connect_kubeconfig(config_file: str | None = None, context: str | None = None) -> ApiClient:
    """An ApiClient for a kubeconfig context (`None`: `$KUBECONFIG` or `~/.kube/config`, its current context)."""
    try:
        client: ApiClient = new_client_from_config(config_file=config_file, context=context)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        where = config_file or "$KUBECONFIG or ~/.kube/config"
        raise ConfigurationError(
            f"Cannot load the Kubernetes configuration from {where} (context: {context or 'current'}): {exc}. "
            "Point KUBECONFIG at a valid file and choose an existing context "
            "(for EKS: aws eks update-kubeconfig --name <cluster>)."
        ) from exc
    return client


def connect_in_cluster() -> ApiClient:
    """An ApiClient from the pod's service account (when the flow itself runs on the cluster)."""
    configuration = Configuration()
    try:
        load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise ConfigurationError(
            f"Not running in a Kubernetes pod with a service account: {exc}. Use a kubeconfig instead."
        ) from exc
    return ApiClient(configuration)


# --- errors -----------------------------------------------------------------------------------------


def _status_message(exc: ApiException) -> str:
    """The `message` of the Status body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or "no reason given")


def api_error(exc: ApiException, action: str) -> PipelineError:
    """Translate a refused API call: 401/403 configuration, 429/5xx transient, anything else a cluster error."""
    status = int(exc.status or 0)
    text = f"The Kubernetes API refused to {action}: HTTP {status}: {_status_message(exc)}"
    if status == 401:
        return ConfigurationError(
            f"{text}. The credentials were not accepted: check the kubeconfig user's token or, for EKS, the AWS "
            "identity and the cluster name the token was made for."
        )
    if status == 403:
        return ConfigurationError(
            f"{text}. The identity lacks permission: grant get, list and patch on deployments.apps in the "
            "namespace (RBAC Role/RoleBinding, or an EKS access entry)."
        )
    if is_transient(exc) or status >= 500:
        return TransientError(f"{text}. The API server may recover: retry.")
    return ClusterError(text)


@contextmanager
def _calling(action: str) -> Iterator[None]:
    """Translate the client's exceptions into ours for the API call made inside."""
    try:
        yield
    except ApiException as exc:
        raise api_error(exc, action) from exc
    except TransportError as exc:
        raise TransientError(
            f"Cannot reach the Kubernetes API to {action}: {exc}. Check the cluster address and the network."
        ) from exc


# --- reading ----------------------------------------------------------------------------------------


def _name(deployment: V1Deployment) -> str:
    return (deployment.metadata.name if deployment.metadata else None) or "<unnamed>"


def _containers(deployment: V1Deployment) -> list[V1Container]:
    pod_spec = deployment.spec.template.spec
    return list(pod_spec.containers) if pod_spec else []


def _container(deployment: V1Deployment, container: str) -> V1Container | None:
    return next((c for c in _containers(deployment) if c.name == container), None)


def read_deployment(apps: AppsV1Api, namespace: str, name: str) -> V1Deployment:
    """One Deployment by name."""
    with _calling(f"read deployment {name!r} in namespace {namespace!r}"):
        deployment: V1Deployment = apps.read_namespaced_deployment(name, namespace)
    return deployment


def list_deployments(apps: AppsV1Api, namespace: str, selector: str) -> list[V1Deployment]:
    """The Deployments in `namespace` matching the label `selector`, by name."""
    with _calling(f"list deployments in namespace {namespace!r} with selector {selector!r}"):
        listed = apps.list_namespaced_deployment(namespace, label_selector=selector)
    return sorted(listed.items, key=_name)


# --- set image --------------------------------------------------------------------------------------


def set_image(
    apps: AppsV1Api,
    namespace: str,
    selector: str,
    container: str,
    image: str,
    annotations: Mapping[str, str] | None = None,
) -> list[ImageChange]:
    """Patch `container` to `image` in every Deployment matching `selector`; all or none.

    `annotations` go on each Deployment in the same patch (so the cluster says what it serves); a rollback
    puts their previous values back with the image.

    Everything is checked before anything is patched. If a patch fails half-way, the Deployments already
    patched get their previous image back before the error is raised, so a retry starts from a clean state.
    """
    if not is_pinned(image):
        raise ConfigurationError(
            f"Image {image!r} is not pinned by digest: deploy <registry>/<repository>@sha256:<64 hex> "
            "(the digest the push reported), so that every replica runs the same bytes."
        )
    deployments = list_deployments(apps, namespace, selector)
    if not deployments:
        raise ClusterError(
            f"No Deployment in namespace {namespace!r} matches the selector {selector!r}: check the team label "
            "and the namespace, or apply deployments/webservice.yaml first."
        )
    missing = [d for d in deployments if _container(d, container) is None]
    if missing:
        described = ", ".join(f"{_name(d)} (has: {', '.join(c.name for c in _containers(d))})" for d in missing)
        raise ClusterError(
            f"Deployment(s) matching {selector!r} in namespace {namespace!r} have no container named "
            f"{container!r}: {described}. Nothing was changed."
        )
    body: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}
    if annotations:
        body["metadata"] = {"annotations": dict(annotations)}
    changes: list[ImageChange] = []
    for deployment in deployments:
        name = _name(deployment)
        current = _container(deployment, container)
        previous = (current.image if current else None) or ""
        existing = (deployment.metadata.annotations if deployment.metadata else None) or {}
        before = tuple((key, existing.get(key)) for key in sorted(annotations or {}))
        try:
            with _calling(f"patch deployment {name!r} in namespace {namespace!r}"):
                patched = apps.patch_namespaced_deployment(name, namespace, body, _content_type=STRATEGIC_MERGE_PATCH)
        except Exception as exc:  # whatever broke, leave no Deployment half-patched
            # The failed patch may have landed all the same (a reply lost on the way): undo it too; the
            # compare-and-swap in `_put_back` leaves it alone if it did not.
            in_flight = ImageChange(name, previous, image, 0, before)
            outcome = _undo(apps, namespace, [*changes, in_flight], container)
            if outcome.startswith(_NOT_RESTORED):  # a retry would take our image for the previous one
                raise ClusterError(f"Patching deployment {name!r} failed: {exc}. {outcome}") from exc
            if isinstance(exc, PipelineError):
                raise type(exc)(f"{exc} {outcome}") from exc
            raise ClusterError(f"Patching deployment {name!r} failed: {exc!r}. {outcome}") from exc
        generation = (patched.metadata.generation if patched.metadata else None) or 0
        changes.append(ImageChange(name, previous, image, generation, before))
    return changes


def _put_back(apps: AppsV1Api, namespace: str, change: ImageChange, container: str) -> V1Deployment | None:
    """Set the container's image back to `change.previous_image` if it still runs `change.new_image`.

    A JSON patch with `test` operations makes this a compare-and-swap on the server: a Deployment that
    someone else changed in the meantime is left alone (None).
    """
    action = f"restore the image of deployment {change.deployment!r} in namespace {namespace!r}"
    with _calling(action):
        current = apps.read_namespaced_deployment(change.deployment, namespace)
    containers = _containers(current)
    index = next((i for i, c in enumerate(containers) if c.name == container), None)
    if index is None or containers[index].image != change.new_image:
        return None
    path = f"/spec/template/spec/containers/{index}"
    operations: list[dict[str, Any]] = [
        {"op": "test", "path": f"{path}/name", "value": container},
        {"op": "test", "path": f"{path}/image", "value": change.new_image},
        {"op": "replace", "path": f"{path}/image", "value": change.previous_image},
    ]
    present = (current.metadata.annotations if current.metadata else None) or {}
    for key, value in change.previous_annotations:
        pointer = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        if value is not None:
            operations.append({"op": "add", "path": pointer, "value": value})
        elif key in present:
            operations.append({"op": "remove", "path": pointer})
    try:
        return apps.patch_namespaced_deployment(change.deployment, namespace, operations, _content_type=JSON_PATCH)
    except ApiException as exc:
        if exc.status == 422:  # a `test` failed: changed between our read and our patch
            return None
        raise api_error(exc, action) from exc
    except TransportError as exc:
        raise TransientError(f"Cannot reach the Kubernetes API to {action}: {exc}.") from exc


def _put_back_retrying(apps: AppsV1Api, namespace: str, change: ImageChange, container: str) -> V1Deployment | None:
    """`_put_back`, retrying transient failures a few times (this runs when something already went wrong)."""
    for attempt in range(_RESTORE_ATTEMPTS):
        try:
            return _put_back(apps, namespace, change, container)
        except TransientError:
            if attempt == _RESTORE_ATTEMPTS - 1:
                raise
            time.sleep(_RESTORE_BACKOFF * 2**attempt)
    return None  # pragma: no cover - the loop returns or raises


def _undo(apps: AppsV1Api, namespace: str, changes: Sequence[ImageChange], container: str) -> str:
    """Put back the images of a half-done `set_image`; say what happened."""
    restored, failed = [], []
    for change in changes:
        if not change.changed:
            continue
        try:
            if _put_back_retrying(apps, namespace, change, container) is not None:
                restored.append(change.deployment)
        except PipelineError as exc:
            failed.append(
                f"{change.deployment} ({exc} Fix by hand: kubectl -n {namespace} set image "
                f"deployment/{change.deployment} {container}={change.previous_image})"
            )
    outcome = (
        f"The previous image is back on: {', '.join(restored)}." if restored else "No Deployment was left changed."
    )
    if failed:
        outcome = f"{_NOT_RESTORED}: {'; '.join(failed)}. {outcome}"
    return outcome


# --- rollout ----------------------------------------------------------------------------------------


def rollout_status(deployment: V1Deployment) -> RolloutState:
    """`kubectl rollout status`'s rule for one Deployment, with its messages."""
    name = _name(deployment)
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
    log: Log = _ignore,
) -> dict[str, V1Deployment]:
    """Poll until every named Deployment has rolled out; `RolloutFailed` on a passed deadline or timeout.

    Each new status message goes to `log`. Transient read errors are logged and polled through. Returns each
    Deployment as it was read when it had rolled out.
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
                deployment = read_deployment(apps, namespace, name)
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


def pod_problems(core: CoreV1Api, apps: AppsV1Api, namespace: str, names: Sequence[str]) -> list[str]:
    """Why the pods of the named Deployments are not ready (pull errors, crash loops), one line per pod."""
    problems: list[str] = []
    for name in names:
        labels = read_deployment(apps, namespace, name).spec.selector.match_labels or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        with _calling(f"list the pods of deployment {name!r} in namespace {namespace!r}"):
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        problems += [problem for pod in pods if (problem := _pod_problem(pod))]
    return problems


def rollback(
    apps: AppsV1Api,
    namespace: str,
    changes: Sequence[ImageChange],
    container: str,
    *,
    timeout: float,
    poll: float = 2.0,
    log: Log = _ignore,
) -> list[ImageChange]:
    """Put the previous images back and wait for that rollout; returns the changes made.

    A Deployment that no longer runs the image we set (someone deployed since) is left alone.
    """
    restored: list[ImageChange] = []
    for change in changes:
        if not change.changed:
            continue
        patched = _put_back_retrying(apps, namespace, change, container)
        if patched is None:
            log(f'deployment "{change.deployment}" no longer runs {change.new_image}: left alone')
            continue
        generation = (patched.metadata.generation if patched.metadata else None) or 0
        restored.append(ImageChange(change.deployment, change.new_image, change.previous_image, generation))
        log(f'deployment "{change.deployment}" image put back to {change.previous_image}')
    wait_for_rollout(apps, namespace, [c.deployment for c in restored], timeout, poll, log)
    return restored


def deploy_image(
    apps: AppsV1Api,
    namespace: str,
    selector: str,
    container: str,
    image: str,
    *,
    timeout: float = 600.0,
    poll: float = 2.0,
    log: Log = _ignore,
) -> list[ImageChange]:
    """The whole deploy: `set_image`, `wait_for_rollout`, and on failure `rollback` and `RolloutFailed`."""
    changes = set_image(apps, namespace, selector, container, image)
    for change in changes:
        log(f'deployment "{change.deployment}": {change.previous_image} -> {change.new_image}')
    try:
        wait_for_rollout(apps, namespace, [c.deployment for c in changes], timeout, poll, log)
    except RolloutFailed as failure:
        log(f"{failure} Putting the previous image back.")
        try:
            restored = rollback(apps, namespace, changes, container, timeout=timeout, poll=poll, log=log)
        except PipelineError as second:
            by_hand = "; ".join(
                f"kubectl -n {namespace} set image deployment/{c.deployment} {container}={c.previous_image}"
                for c in changes
            )
            raise RolloutFailed(f"{failure} The rollback failed too: {second} Fix by hand: {by_hand}") from failure
        back = ", ".join(f"{c.deployment} runs {c.new_image} again" for c in restored)
        raise RolloutFailed(f"{failure} Rolled back: {back or 'nothing to restore'}.") from failure
    return changes
