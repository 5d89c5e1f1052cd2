"""Deploy stage: point the web service's Deployments at a new image, and put the old one back.

The seed ran `kubectl set image deployments -l app=oncology-webservice,team=<team> oncology-webservice=<image>`
and forgot about it. Here the same patch goes through the official client, the image is pinned by digest,
the rollout is watched (`oncology_pipeline.rolloutstatus`), and production's recorded image is restored when the
rollout fails (what ran before only when there is no production yet: an image nobody verified is never the way
back). One function per verb, the API object first; nothing here knows Prefect. Connecting and reading are in
`oncology_pipeline.kubeapi`; every call waits at most `request_timeout` seconds for the API server.

Putting images back (a half-done `set_image`, a `rollback`) runs inside the caller's `protect()`: a context that
holds off cancellations (the deploy tasks pass Prefect's cancellation shield) so that they cannot cut it short.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import AppsV1Api, V1Container, V1Deployment
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from oncology_pipeline.errors import ClusterError, ConfigurationError, PipelineError, TransientError
from oncology_pipeline.kubeapi import api_error, calling, deployment_name, list_deployments
from oncology_pipeline.rolloutstatus import Log, no_log, wait_for_rollout

WEBSERVICE_APP = "oncology-webservice"
WEBSERVICE_CONTAINER = "oncology-webservice"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/:]*@sha256:[0-9a-f]{64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NOT_RESTORED = "COULD NOT restore"
_RESTORE_ATTEMPTS = 3
_RESTORE_BACKOFF = 0.5  # seconds, doubled per attempt

#: What putting images back runs in: a context that holds off cancellations (default: nothing held off).
Protect = Callable[[], AbstractContextManager[object]]


@dataclass(frozen=True)
class ImageChange:
    """One Deployment's container image after a patch, and the image (annotations, container variables) a rollback
    puts back: the previous value of each annotation and variable the patch set, None where there was none."""

    deployment: str
    previous_image: str
    new_image: str
    generation: int
    previous_annotations: tuple[tuple[str, str | None], ...] = ()
    previous_env: tuple[tuple[str, str | None], ...] = ()

    @property
    def changed(self) -> bool:
        """The patch changed something that a rollback must put back (the image, annotations or variables)."""
        return self.previous_image != self.new_image or bool(self.previous_annotations or self.previous_env)


@dataclass(frozen=True)
class Restore:
    """What a rollback puts back: production's recorded image, the annotations that name its version, and the
    container variables a deploy of it sets."""

    image: str
    annotations: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)


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


# --- set image --------------------------------------------------------------------------------------


def _containers(deployment: V1Deployment) -> list[V1Container]:
    pod_spec = deployment.spec.template.spec
    return list(pod_spec.containers) if pod_spec else []


def _container(deployment: V1Deployment, container: str) -> V1Container | None:
    return next((c for c in _containers(deployment) if c.name == container), None)


def container_image(deployment: V1Deployment, container: str) -> str | None:
    """The image of `container` in the Deployment's pod template (None: no such container)."""
    found = _container(deployment, container)
    return found.image if found else None


def set_image(
    apps: AppsV1Api,
    namespace: str,
    selector: str,
    container: str,
    image: str,
    annotations: Mapping[str, str] | None = None,
    restore: Restore | None = None,
    *,
    env: Mapping[str, str] | None = None,
    request_timeout: float,
    protect: Protect = nullcontext,
) -> list[ImageChange]:
    """Patch `container` to `image` in every Deployment matching `selector`; all or none.

    `annotations` go on each Deployment in the same patch (so the cluster says what it serves), and `env` on the
    container (merged by name). A rollback puts `restore` back (production's recorded image and annotations), else
    what each Deployment ran before, variables included: the pod template is then the one before, and the controller
    scales the old ReplicaSet back up instead of replacing its pods.

    Everything is checked before anything is patched. If a patch fails half-way, or anything else interrupts the
    patching (a timeout, a lost lease, Ctrl-C: any BaseException), the Deployments already patched get their image
    and annotations back (inside `protect()`) before the error is raised, so a retry starts from a clean state. An
    error becomes ours, naming what was put back; any other BaseException is raised as it is, with that as a note.
    """
    if not is_pinned(image):
        raise ConfigurationError(
            f"Image {image!r} is not pinned by digest: deploy <registry>/<repository>@sha256:<64 hex> "
            "(the digest the push reported), so that every replica runs the same bytes."
        )
    deployments = list_deployments(apps, namespace, selector, request_timeout=request_timeout)
    if not deployments:
        raise ClusterError(
            f"No Deployment in namespace {namespace!r} matches the selector {selector!r}: check the team label "
            "and the namespace, or apply deployments/webservice.yaml first."
        )
    missing = [d for d in deployments if _container(d, container) is None]
    if missing:
        described = ", ".join(
            f"{deployment_name(d)} (has: {', '.join(c.name for c in _containers(d))})" for d in missing
        )
        raise ClusterError(
            f"Deployment(s) matching {selector!r} in namespace {namespace!r} have no container named "
            f"{container!r}: {described}. Nothing was changed."
        )
    patched_container: dict[str, Any] = {"name": container, "image": image}
    if env:
        patched_container["env"] = [{"name": name, "value": value} for name, value in env.items()]
    body: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [patched_container]}}}}
    if annotations:
        body["metadata"] = {"annotations": dict(annotations)}
    # Each Deployment goes on the list before its patch is sent: a patch may land although its reply never comes
    # (or an interruption arrives first); the compare-and-swap in `_put_back` leaves it alone if it did not land.
    changes: list[ImageChange] = []
    try:
        for deployment in deployments:
            name = deployment_name(deployment)
            existing: Mapping[str, str]
            existing_env: Mapping[str, str | None]
            running, running_env = (
                container_image(deployment, container) or "",
                _env_values(_container(deployment, container)),
            )
            if restore is None:
                previous, existing_env = running, running_env
                existing = (deployment.metadata.annotations if deployment.metadata else None) or {}
            else:  # production's variables as they run, when production runs (its pods are kept on a rollback)
                previous, existing = restore.image, restore.annotations
                existing_env = running_env if running == restore.image else restore.env
            before = tuple((key, existing.get(key)) for key in sorted(annotations or {}))
            env_before = tuple((key, existing_env.get(key)) for key in sorted(env or {}))
            changes.append(ImageChange(name, previous, image, 0, before, env_before))
            with calling(f"patch deployment {name!r} in namespace {namespace!r}"):
                patched = apps.patch_namespaced_deployment(
                    name, namespace, body, _content_type=STRATEGIC_MERGE_PATCH, _request_timeout=request_timeout
                )
            generation = (patched.metadata.generation if patched.metadata else None) or 0
            changes[-1] = ImageChange(name, previous, image, generation, before, env_before)
    except BaseException as exc:  # whatever broke or interrupted it, leave no Deployment half-patched
        with protect():
            outcome = _undo(apps, namespace, changes, container, request_timeout)
        if not isinstance(exc, Exception):  # a cancellation or an interrupt goes on as it is
            exc.add_note(f"set_image was interrupted: {outcome}")
            raise
        failed = changes[-1].deployment if changes else "<none>"
        if outcome.startswith(_NOT_RESTORED):  # a retry would take our image for the previous one
            raise ClusterError(f"Patching deployment {failed!r} failed: {exc}. {outcome}") from exc
        if isinstance(exc, PipelineError):
            raise type(exc)(f"{exc} {outcome}") from exc
        raise ClusterError(f"Patching deployment {failed!r} failed: {exc!r}. {outcome}") from exc
    return changes


def _env_values(container: V1Container | None) -> dict[str, str | None]:
    """The container's variables set by value (one set from a source, `valueFrom`, counts as None)."""
    return {item.name: item.value for item in (container.env or [])} if container else {}


def _env_operations(path: str, current: V1Container, previous: Sequence[tuple[str, str | None]]) -> list[Any]:
    """JSON-patch operations that give the container's variables named in `previous` their previous values (None:
    removed), each guarded by a `test` of its name; removals last, from the highest index down
    (the whole list when none would be left)."""
    names = [item.name for item in current.env or []]
    operations: list[dict[str, Any]] = []
    removals: list[int] = []
    added = False
    for name, value in previous:
        if name in names:
            index = names.index(name)
            operations.append({"op": "test", "path": f"{path}/env/{index}/name", "value": name})
            if value is None:
                removals.append(index)
            else:
                operations.append(
                    {"op": "replace", "path": f"{path}/env/{index}", "value": {"name": name, "value": value}}
                )
        elif value is not None:
            if not names and not added:  # no list yet
                operations.append({"op": "add", "path": f"{path}/env", "value": []})
            operations.append({"op": "add", "path": f"{path}/env/-", "value": {"name": name, "value": value}})
            added = True
    if removals and len(removals) == len(names) and not added:
        return [*operations, {"op": "remove", "path": f"{path}/env"}]  # none left: the list the patch added goes
    operations += [{"op": "remove", "path": f"{path}/env/{index}"} for index in sorted(removals, reverse=True)]
    return operations


def _put_back(
    apps: AppsV1Api, namespace: str, change: ImageChange, container: str, request_timeout: float
) -> V1Deployment | None:
    """Set the container's image back to `change.previous_image` if it still runs `change.new_image`.

    A JSON patch with `test` operations makes this a compare-and-swap on the server: a Deployment that
    someone else changed in the meantime is left alone (None).
    """
    action = f"restore the image of deployment {change.deployment!r} in namespace {namespace!r}"
    with calling(action):
        current = apps.read_namespaced_deployment(change.deployment, namespace, _request_timeout=request_timeout)
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
    operations += _env_operations(path, containers[index], change.previous_env)
    present = (current.metadata.annotations if current.metadata else None) or {}
    for key, value in change.previous_annotations:
        pointer = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        if value is not None:
            operations.append({"op": "add", "path": pointer, "value": value})
        elif key in present:
            operations.append({"op": "remove", "path": pointer})
    try:
        return apps.patch_namespaced_deployment(
            change.deployment, namespace, operations, _content_type=JSON_PATCH, _request_timeout=request_timeout
        )
    except ApiException as exc:
        if exc.status == 422:  # a `test` failed: changed between our read and our patch
            return None
        raise api_error(exc, action) from exc
    except TransportError as exc:
        raise TransientError(f"Cannot reach the Kubernetes API to {action}: {exc}.") from exc


def _put_back_retrying(
    apps: AppsV1Api, namespace: str, change: ImageChange, container: str, request_timeout: float
) -> V1Deployment | None:
    """`_put_back`, retrying transient failures a few times (this runs when something already went wrong)."""
    for attempt in range(_RESTORE_ATTEMPTS):
        try:
            return _put_back(apps, namespace, change, container, request_timeout)
        except TransientError:
            if attempt == _RESTORE_ATTEMPTS - 1:
                raise
            time.sleep(_RESTORE_BACKOFF * 2**attempt)
    return None  # pragma: no cover - the loop returns or raises


def _undo(
    apps: AppsV1Api, namespace: str, changes: Sequence[ImageChange], container: str, request_timeout: float
) -> str:
    """Put back the images of a half-done `set_image`; say what happened."""
    restored, failed = [], []
    for change in changes:
        if not change.changed:
            continue
        try:
            if _put_back_retrying(apps, namespace, change, container, request_timeout) is not None:
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


# --- rollback ---------------------------------------------------------------------------------------


def rollback(
    apps: AppsV1Api,
    namespace: str,
    changes: Sequence[ImageChange],
    container: str,
    *,
    timeout: float,
    poll: float = 2.0,
    log: Log = no_log,
    request_timeout: float,
    protect: Protect = nullcontext,
) -> list[ImageChange]:
    """Put the previous images back and wait for that rollout, all inside `protect()`; returns the changes made.

    A Deployment that no longer runs the image we set (someone deployed since) is left alone.
    """
    restored: list[ImageChange] = []
    with protect():
        for change in changes:
            if not change.changed:
                continue
            patched = _put_back_retrying(apps, namespace, change, container, request_timeout)
            if patched is None:
                log(f'deployment "{change.deployment}" no longer runs {change.new_image}: left alone')
                continue
            generation = (patched.metadata.generation if patched.metadata else None) or 0
            restored.append(ImageChange(change.deployment, change.new_image, change.previous_image, generation))
            log(f'deployment "{change.deployment}" image put back to {change.previous_image}')
        names = [c.deployment for c in restored]
        wait_for_rollout(apps, namespace, names, timeout, poll, log, request_timeout=request_timeout)
    return restored
