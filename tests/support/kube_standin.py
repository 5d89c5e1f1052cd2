"""A STAND-IN for the Kubernetes API server: apps/v1 Deployments and ReplicaSets over real HTTP.

This is NOT Kubernetes. No API server can be installed on this machine (see ENVIRONMENT.md), so the deploy
code is tested against this focused double, built on the standard library's `ThreadingHTTPServer`. It
speaks the REST protocol the official `kubernetes` client uses, for the part of the API the deploy stage
touches:

- `GET /apis/apps/v1/namespaces/{ns}/deployments?labelSelector=...` (equality and set-based selectors)
  answers a `DeploymentList`; also all namespaces, `GET`/`PATCH`/`DELETE` one Deployment, `POST` to create.
- `PATCH` with `application/strategic-merge-patch+json` (lists such as `containers` merged by their merge
  key, `$patch: delete|replace`), `application/merge-patch+json` (RFC 7386) and
  `application/json-patch+json` (RFC 6902, including `test`); `?dryRun=All`.
- `metadata.generation` goes up only when the spec changes, `metadata.resourceVersion` on every change;
  the status cannot be patched through the main resource.
- A simulated deployment controller (a thread stepping every `step_interval` seconds) runs rolling updates
  with ReplicaSets (`deployment.kubernetes.io/revision` history, reused on rollback), surge/unavailable
  budgets, pods that become ready `pod_start_steps` steps after they start, `status.observedGeneration`,
  replica counts, and the `Available` / `Progressing` conditions (`NewReplicaSetAvailable`,
  `ProgressDeadlineExceeded`).
- `GET /apis/apps/v1/.../replicasets`, `/version` (anonymous, as `system:public-info-viewer` allows), and
  the discovery documents `/api`, `/apis`, `/apis/apps/v1`. (kubectl 1.33 sends no bearer token over plain
  HTTP, even with `--token`, so kubectl itself gets 401 here; the Python client sends it.)
- Errors are `Status` objects: 404 for unknown objects or paths, 401 without the expected bearer token,
  422 for invalid patches, 415 for other patch types; `watch` is refused (400).

Switches for tests: `break_image(image, "fail" | "hang")` (pods of that image never become ready; "fail"
also lets the progress deadline pass, "hang" never does), `fail_requests(...)` (the next N matching
requests answer 500 or any status, before or after taking effect), `progress_deadline=` (seconds,
overrides `progressDeadlineSeconds`), `pod_start_steps=` (a slower application start).

Run it for the local demo:
`python -m tests.support.kube_standin --port 8001 --token demo --kubeconfig .work/kubeconfig.yaml`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

log = logging.getLogger(__name__)

JSON = dict[str, Any]
BreakMode = Literal["fail", "hang"]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
SMP = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
SERVER_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-standin", "platform": "linux/amd64"}

# Merge keys of the lists inside a Deployment, as the strategic-merge-patch schema defines them.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "conditions": "type",
}
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class ApiError(Exception):
    """An error answered to the client as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        """The `Status` body the API server would send."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{resource}.apps "{name}" not found',
        {"name": name, "group": "apps", "kind": resource},
    )


def _invalid(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- patches ----------------------------------------------------------------------------------------


def strategic_merge(original: Any, patch: Any, key: str | None = None) -> Any:
    """Apply a strategic-merge patch: maps merge, keyed lists merge by their merge key, `null` deletes."""
    if isinstance(patch, dict):
        directive = patch.get("$patch")
        if directive == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        if directive == "delete":
            return None
        result = dict(original) if isinstance(original, dict) else {}
        for name, value in patch.items():
            if name.startswith("$"):  # $setElementOrder, $retainKeys, $deleteFromPrimitiveList: ordering hints
                continue
            if value is None:
                result.pop(name, None)
                continue
            merged = strategic_merge(result.get(name), value, name)
            if merged is None:
                result.pop(name, None)
            else:
                result[name] = merged
        return result
    if isinstance(patch, list) and key in _MERGE_KEYS:
        return _merge_keyed_list(original if isinstance(original, list) else [], patch, _MERGE_KEYS[key])
    return copy.deepcopy(patch)


def _merge_keyed_list(original: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [item for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise _invalid(f"strategic merge patch: list items need the merge key {merge_key!r}: {item!r}")
        index = next(
            (i for i, old in enumerate(result) if isinstance(old, dict) and old.get(merge_key) == item[merge_key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append({k: v for k, v in item.items() if v is not None and not k.startswith("$")})
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: maps merge, lists are replaced, `null` deletes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _invalid(f"json patch: invalid path {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise _invalid(f"json patch: path {path!r} does not exist") from exc
    return node


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    try:
        return parent[int(parts[-1])] if isinstance(parent, list) else parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise _invalid(f"json patch: path {path!r} does not exist") from exc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent = _parent(doc, parts, path)
    try:
        return parent.pop(int(parts[-1])) if isinstance(parent, list) else parent.pop(parts[-1])
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise _invalid(f"json patch: cannot remove {path!r}: it does not exist") from exc


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, list):
        try:
            index = len(parent) if last == "-" else int(last)
        except ValueError as exc:
            raise _invalid(f"json patch: invalid array index in {path!r}") from exc
        if not 0 <= index <= len(parent) - (1 if replace else 0):
            raise _invalid(f"json patch: index out of range in {path!r}")
        if replace:
            parent[index] = copy.deepcopy(value)
        else:
            parent.insert(index, copy.deepcopy(value))
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise _invalid(f"json patch: cannot replace {path!r}: it does not exist")
        parent[last] = copy.deepcopy(value)
    else:
        raise _invalid(f"json patch: path {path!r} does not exist")
    return doc


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test); all or nothing."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "json patch: the body must be a list of operations")
    result = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _invalid(f"json patch: invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            result = _add(result, path, op.get("value"))
        elif kind == "remove":
            _remove(result, path)
        elif kind == "replace":
            result = _add(result, path, op.get("value"), replace=True)
        elif kind == "move":
            result = _add(result, path, _remove(result, op["from"]))
        elif kind == "copy":
            result = _add(result, path, _get(result, op["from"]))
        elif kind == "test":
            if _get(result, path) != op.get("value"):
                raise _invalid(f"json patch: test failed: the value at {path!r} is not {op.get('value')!r}")
        else:
            raise _invalid(f"json patch: unknown operation {kind!r}")
    return result


# --- label selectors --------------------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_VALUE = r"[A-Za-z0-9._-]*"
_EQUALITY = re.compile(rf"^(?P<key>{_LABEL})\s*(?P<op>==|!=|=)\s*(?P<value>{_VALUE})$")
_SET = re.compile(rf"^(?P<key>{_LABEL})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EXISTS = re.compile(rf"^(?P<neg>!?)\s*(?P<key>{_LABEL})$")

Selector = Callable[[dict[str, str]], bool]


def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _equals(key: str, value: str, negate: bool) -> Selector:
    return lambda labels: (labels.get(key) == value) != negate


def _within(key: str, values: frozenset[str], negate: bool) -> Selector:
    return lambda labels: (labels.get(key) in values) != negate


def _exists(key: str, negate: bool) -> Selector:
    return lambda labels: (key in labels) != negate


def parse_label_selector(text: str) -> list[Selector]:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` into predicates over a label map."""
    requirements: list[Selector] = []
    for part in _split_requirements(text):
        if match := _EQUALITY.match(part):
            requirements.append(_equals(match["key"], match["value"], match["op"] == "!="))
        elif match := _SET.match(part):
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(_within(match["key"], values, match["op"] == "notin"))
        elif match := _EXISTS.match(part):
            requirements.append(_exists(match["key"], bool(match["neg"])))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r} in selector {text!r}")
    return requirements


def _matches(requirements: list[Selector], labels: dict[str, str] | None) -> bool:
    return all(requirement(labels or {}) for requirement in requirements)


# --- the stand-in -----------------------------------------------------------------------------------


@dataclass
class _FailureRule:
    method: str
    count: int
    status: int
    after: int
    path_contains: str | None
    applied: bool

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and (self.path_contains is None or self.path_contains in path)


@dataclass
class _RolloutSim:
    """Controller-side memory of one Deployment (what the real controller keeps in ReplicaSets and caches)."""

    last_progress: float = field(default_factory=time.monotonic)
    new_ready: int = 0


def _template_hash(template: JSON) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:10])


def _resolve(value: Any, replicas: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    raise _invalid(f"spec.strategy.rollingUpdate: invalid value {value!r}")


def _drop_zero(status: JSON) -> JSON:
    """The API server omits zero counts (`omitempty`); clients must read a missing count as 0."""
    return {k: v for k, v in status.items() if v not in (0, None)}


class KubeStandIn:
    """A Kubernetes API stand-in on 127.0.0.1 with a simulated deployment controller (see module doc)."""

    def __init__(
        self,
        token: str = "standin-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        step_interval: float = 0.1,
        progress_deadline: float | None = None,
        pod_start_steps: int = 1,
    ) -> None:
        self.token = token
        self.step_interval = step_interval
        self.pod_start_steps = pod_start_steps
        self.progress_deadline = progress_deadline
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], JSON] = {}  # (resource, namespace, name) -> object
        self._pods: dict[tuple[str, str], list[int]] = {}  # (namespace, replicaset) -> start step of each pod
        self._sims: dict[tuple[str, str], _RolloutSim] = {}
        self._broken: dict[str, BreakMode] = {}
        self._failures: list[_FailureRule] = []
        self._resource_version = 1000
        self._step = 0
        self._stop = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.standin = self
        self._threads: list[threading.Thread] = []

    # lifecycle

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeStandIn:
        """Serve HTTP and run the controller in background threads."""
        self._threads = [
            threading.Thread(target=self._server.serve_forever, args=(0.05,), name="kube-standin-http"),
            threading.Thread(target=self._run_controller, name="kube-standin-controller"),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and stop the controller."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def write_kubeconfig(
        self,
        path: str | Path,
        *,
        token: str | None = None,
        context: str = "kube-standin",
        namespace: str = "default",
    ) -> Path:
        """Write a kubeconfig (server = this stand-in, a token user) as real users have one."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": f"{context}-user", "user": {"token": self.token if token is None else token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": f"{context}-user", "namespace": namespace},
                }
            ],
            "current-context": context,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # seeding and inspection (Python side)

    def add_deployment(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        containers: list[JSON] | dict[str, str],
        replicas: int = 1,
    ) -> JSON:
        """Create a Deployment whose rollout has already finished (pods running, revision 1).

        `containers` is a list of container objects or a `{name: image}` map.
        """
        if isinstance(containers, dict):
            containers = [{"name": cname, "image": image} for cname, image in containers.items()]
        manifest: JSON = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": containers}},
            },
        }
        return self.add_manifest(manifest, namespace=namespace)

    def add_manifest(self, manifest: JSON, *, namespace: str | None = None, settle: bool = True) -> JSON:
        """Create a Deployment from a manifest; `settle` runs the controller until it is rolled out."""
        with self._lock:
            ns = namespace or manifest.get("metadata", {}).get("namespace") or "default"
            created = self._create_deployment(ns, manifest)
            name = created["metadata"]["name"]
            if settle:
                for _ in range(10_000):
                    self._step_once()
                    if self._complete(ns, name):
                        break
                else:  # pragma: no cover - only with a broken image
                    raise RuntimeError(f"deployment {name} did not settle")
            return copy.deepcopy(self._objects[("deployments", ns, name)])

    def deployment(self, namespace: str, name: str) -> JSON:
        """A copy of a stored Deployment."""
        with self._lock:
            return copy.deepcopy(self._get("deployments", namespace, name))

    def replicasets(self, namespace: str, deployment: str | None = None) -> list[JSON]:
        """Copies of the ReplicaSets in a namespace (of one Deployment if named), oldest revision first."""
        with self._lock:
            return sorted(
                (
                    copy.deepcopy(rs)
                    for (kind, ns, _), rs in self._objects.items()
                    if kind == "replicasets"
                    and ns == namespace
                    and (deployment is None or self._owner(rs) == deployment)
                ),
                key=lambda rs: int(rs["metadata"]["annotations"][REVISION_ANNOTATION]),
            )

    def break_image(self, image: str, mode: BreakMode = "fail") -> None:
        """Pods running `image` never become ready; "fail" lets the progress deadline pass, "hang" never."""
        with self._lock:
            self._broken[image] = mode

    def heal_image(self, image: str) -> None:
        """Undo `break_image`."""
        with self._lock:
            self._broken.pop(image, None)

    def fail_requests(
        self,
        method: str,
        count: int = 1,
        *,
        status: int = 500,
        after: int = 0,
        path_contains: str | None = None,
        applied: bool = False,
    ) -> None:
        """Let the next `count` requests with `method` ("*" = any) fail with `status`, after `after` pass.

        `applied=True`: the request takes effect and only its answer is the error (a reply lost on the way).
        """
        with self._lock:
            self._failures.append(_FailureRule(method.upper(), count, status, after, path_contains, applied))

    def requests_made(self, method: str) -> list[str]:
        """Paths of the requests received with `method` (authorized or not), in order."""
        with self._lock:
            return [path for m, path in self.requests if m == method]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll `predicate` until true or `timeout` seconds pass (for tests of the simulation itself)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # object store

    def _bump(self, obj: JSON) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)

    def _get(self, resource: str, namespace: str, name: str) -> JSON:
        try:
            return self._objects[(resource, namespace, name)]
        except KeyError:
            raise _not_found(resource, name) from None

    def _list(self, resource: str, namespace: str | None, selector: str | None) -> list[JSON]:
        requirements = parse_label_selector(selector) if selector else []
        return [
            obj
            for (kind, ns, _), obj in sorted(self._objects.items())
            if kind == resource
            and (namespace is None or ns == namespace)
            and _matches(requirements, obj["metadata"].get("labels"))
        ]

    @staticmethod
    def _owner(rs: JSON) -> str | None:
        owners = rs["metadata"].get("ownerReferences") or [{}]
        name: str | None = owners[0].get("name")
        return name

    def _validate_deployment(self, obj: JSON, previous: JSON | None = None) -> None:
        meta, spec = obj.get("metadata") or {}, obj.get("spec")
        if not meta.get("name"):
            raise _invalid("metadata.name: Required value")
        if not isinstance(spec, dict):
            raise _invalid(f'Deployment.apps "{meta["name"]}" is invalid: spec: Required value')
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            raise _invalid(
                f'Deployment.apps "{meta["name"]}" is invalid: spec.template.spec.containers: Required value'
            )
        for i, container in enumerate(containers):
            for required in ("name", "image"):
                if not isinstance(container, dict) or not container.get(required):
                    raise _invalid(
                        f'Deployment.apps "{meta["name"]}" is invalid: '
                        f"spec.template.spec.containers[{i}].{required}: Required value"
                    )
        match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        template_labels = (spec["template"].get("metadata") or {}).get("labels") or {}
        if not match_labels or any(template_labels.get(k) != v for k, v in match_labels.items()):
            raise _invalid(
                f'Deployment.apps "{meta["name"]}" is invalid: spec.template.metadata.labels: '
                "`selector` does not match template `labels`"
            )
        if previous is not None and previous["spec"]["selector"] != spec["selector"]:
            raise _invalid(f'Deployment.apps "{meta["name"]}" is invalid: spec.selector: field is immutable')
        if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) < 0:
            raise _invalid(f'Deployment.apps "{meta["name"]}" is invalid: spec.replicas: must be >= 0')

    def _create_deployment(self, namespace: str, manifest: JSON) -> JSON:
        obj = copy.deepcopy(manifest)
        obj["apiVersion"], obj["kind"] = "apps/v1", "Deployment"
        meta = obj.setdefault("metadata", {})
        self._validate_deployment(obj)
        if ("deployments", namespace, meta["name"]) in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'deployments.apps "{meta["name"]}" already exists',
                {"name": meta["name"], "group": "apps", "kind": "deployments"},
            )
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=_now(),
        )
        spec = obj["spec"]
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
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
        self._bump(obj)
        self._objects[("deployments", namespace, meta["name"])] = obj
        self._sims[(namespace, meta["name"])] = _RolloutSim()
        return obj

    def _patch_deployment(self, namespace: str, name: str, content_type: str, body: Any, dry_run: bool) -> JSON:
        current = self._get("deployments", namespace, name)
        if content_type == SMP:
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "strategic merge patch: the body must be a JSON object")
            patched = strategic_merge(current, body)
        elif content_type == MERGE_PATCH:
            patched = merge_patch(current, body)
        elif content_type == JSON_PATCH:
            patched = json_patch(current, body)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {SMP} (this stand-in has no server-side apply)",
            )
        if not isinstance(patched, dict):
            raise _invalid("the patched object is not a JSON object")
        patched = copy.deepcopy(patched)
        # The server owns these fields; the status has its own subresource.
        meta = patched.setdefault("metadata", {})
        if meta.get("name") != name:
            raise _invalid(
                f"metadata.name: Invalid value: {meta.get('name')!r}: the name of the object must not change"
            )
        for owned in ("uid", "generation", "resourceVersion", "creationTimestamp", "namespace"):
            meta[owned] = current["metadata"][owned]
        patched["status"] = copy.deepcopy(current["status"])
        patched["apiVersion"], patched["kind"] = "apps/v1", "Deployment"
        self._validate_deployment(patched, previous=current)
        if patched == current:
            return current
        if patched["spec"] != current["spec"]:
            meta["generation"] = current["metadata"]["generation"] + 1
        if dry_run:
            return patched
        self._bump(patched)
        self._objects[("deployments", namespace, name)] = patched
        return patched

    def _delete_deployment(self, namespace: str, name: str) -> JSON:
        obj = self._objects.pop(("deployments", namespace, name), None)
        if obj is None:
            raise _not_found("deployments", name)
        for rs in self._list("replicasets", namespace, None):
            if self._owner(rs) == name:
                self._objects.pop(("replicasets", namespace, rs["metadata"]["name"]), None)
                self._pods.pop((namespace, rs["metadata"]["name"]), None)
        self._sims.pop((namespace, name), None)
        return obj

    # the simulated deployment controller

    def _run_controller(self) -> None:
        while not self._stop.wait(self.step_interval):
            self.step()

    def step(self) -> None:
        """One pass of the simulated controller over every Deployment (the thread calls this)."""
        with self._lock:
            self._step_once()

    def _step_once(self) -> None:
        self._step += 1
        for (kind, ns, name), obj in list(self._objects.items()):
            if kind == "deployments":
                self._reconcile(ns, name, obj)

    def _pod_ready(self, template: JSON, started: int) -> bool:
        images = [c.get("image") for c in template["spec"]["containers"]]
        return started + self.pod_start_steps <= self._step and not any(image in self._broken for image in images)

    def _ready(self, ns: str, rs: JSON) -> int:
        pods = self._pods.get((ns, rs["metadata"]["name"]), [])
        return sum(self._pod_ready(rs["spec"]["template"], started) for started in pods)

    def _owned(self, ns: str, name: str) -> list[JSON]:
        return [rs for rs in self._list("replicasets", ns, None) if self._owner(rs) == name]

    def _new_replicaset(self, ns: str, deployment: JSON) -> JSON | None:
        template = deployment["spec"]["template"]
        for rs in self._owned(ns, deployment["metadata"]["name"]):
            if rs["metadata"]["labels"]["pod-template-hash"] == _template_hash(template):
                return rs
        return None

    def _complete(self, ns: str, name: str) -> bool:
        deployment = self._objects[("deployments", ns, name)]
        status = deployment["status"]
        desired = deployment["spec"]["replicas"]
        return bool(
            status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == desired
            and status.get("replicas", 0) == desired
            and status.get("availableReplicas", 0) == desired
        )

    def _reconcile(self, ns: str, name: str, deployment: JSON) -> None:
        before = copy.deepcopy(deployment)
        sim = self._sims.setdefault((ns, name), _RolloutSim())
        spec, status = deployment["spec"], deployment["status"]
        owned = self._owned(ns, name)
        revision = max((int(rs["metadata"]["annotations"][REVISION_ANNOTATION]) for rs in owned), default=0)
        new_rs = self._new_replicaset(ns, deployment)
        progressed = False
        reason, message = None, None
        if new_rs is None:
            new_rs = self._create_replicaset(ns, deployment, revision + 1)
            progressed = True
            reason, message = "NewReplicaSetCreated", f'Created new replica set "{new_rs["metadata"]["name"]}"'
            revision += 1
        elif int(new_rs["metadata"]["annotations"][REVISION_ANNOTATION]) != revision:
            # A rollback to an older template reuses its ReplicaSet, which becomes the newest revision.
            revision += 1
            new_rs["metadata"]["annotations"][REVISION_ANNOTATION] = str(revision)
            progressed = True
            reason, message = "FoundNewReplicaSet", f'Found new replica set "{new_rs["metadata"]["name"]}"'
        deployment["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(revision)
        if status.get("observedGeneration", 0) < deployment["metadata"]["generation"]:
            status["observedGeneration"] = deployment["metadata"]["generation"]
            progressed = True
        rs_name = new_rs["metadata"]["name"]
        if not spec.get("paused"):
            progressed |= self._scale(ns, deployment, new_rs)
        ready_new = self._ready(ns, new_rs)
        if ready_new > sim.new_ready:
            progressed = True
        sim.new_ready = ready_new
        owned = self._owned(ns, name)
        self._prune_history(ns, deployment, owned, new_rs)
        self._update_replicaset_status(ns, owned)
        self._update_status(ns, deployment, new_rs, owned)
        now = time.monotonic()
        if progressed:
            sim.last_progress = now
        if self._complete(ns, name):
            self._set_condition(
                deployment,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif progressed:
            self._set_condition(
                deployment,
                "Progressing",
                "True",
                reason or "ReplicaSetUpdated",
                message or f'ReplicaSet "{rs_name}" is progressing.',
            )
        elif self._deadline_passed(spec, new_rs, now - sim.last_progress):
            self._set_condition(
                deployment,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        if deployment != before:
            self._bump(deployment)

    def _deadline_passed(self, spec: JSON, new_rs: JSON, idle: float) -> bool:
        images = [c.get("image") for c in new_rs["spec"]["template"]["spec"]["containers"]]
        if any(self._broken.get(image) == "hang" for image in images):
            return False
        deadline = self.progress_deadline if self.progress_deadline is not None else spec["progressDeadlineSeconds"]
        return idle > float(deadline)

    def _create_replicaset(self, ns: str, deployment: JSON, revision: int) -> JSON:
        template = copy.deepcopy(deployment["spec"]["template"])
        template_hash = _template_hash(template)
        labels = {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": template_hash}
        template.setdefault("metadata", {})["labels"] = labels
        name = f"{deployment['metadata']['name']}-{template_hash}"
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        rs: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": _now(),
                "labels": labels,
                "annotations": {
                    REVISION_ANNOTATION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(deployment["spec"]["replicas"]),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": deployment["metadata"]["name"],
                        "uid": deployment["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        self._bump(rs)
        self._objects[("replicasets", ns, name)] = rs
        self._pods[(ns, name)] = []
        return rs

    def _scale(self, ns: str, deployment: JSON, new_rs: JSON) -> bool:
        """One rolling-update move: start a new pod, or stop an old one within the budgets."""
        spec = deployment["spec"]
        desired = spec["replicas"]
        new_pods = self._pods[(ns, new_rs["metadata"]["name"])]
        old = [
            rs
            for rs in self._owned(ns, deployment["metadata"]["name"])
            if rs is not new_rs and self._pods.get((ns, rs["metadata"]["name"]))
        ]
        if spec["strategy"].get("type") == "Recreate":
            max_surge, max_unavailable = 0, desired
            if old:  # all old pods go before any new one starts
                for rs in old:
                    self._pods[(ns, rs["metadata"]["name"])].clear()
                return True
        else:
            rolling = spec["strategy"].get("rollingUpdate") or {}
            max_surge = _resolve(rolling.get("maxSurge", "25%"), desired, round_up=True)
            max_unavailable = _resolve(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
            if max_surge == 0 and max_unavailable == 0:
                max_unavailable = 1
        total = len(new_pods) + sum(len(self._pods[(ns, rs["metadata"]["name"])]) for rs in old)
        available = self._ready(ns, new_rs) + sum(self._ready(ns, rs) for rs in old)
        moved = False
        if len(new_pods) > desired:
            new_pods.pop()
            moved = True
        elif len(new_pods) < desired and total < desired + max_surge:
            new_pods.append(self._step)
            moved = True
        for rs in old:
            pods = self._pods[(ns, rs["metadata"]["name"])]
            template = rs["spec"]["template"]
            unready = [p for p in pods if not self._pod_ready(template, p)]
            if unready:  # unavailable old pods cost nothing to remove
                pods.remove(unready[-1])
                moved = True
                break
            if available - 1 >= desired - max_unavailable:
                pods.pop()
                moved = True
                break
        return moved

    def _prune_history(self, ns: str, deployment: JSON, owned: list[JSON], new_rs: JSON) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in owned if rs is not new_rs and not self._pods.get((ns, rs["metadata"]["name"]))]
        idle.sort(key=lambda rs: int(rs["metadata"]["annotations"][REVISION_ANNOTATION]))
        for rs in idle[: max(0, len(idle) - limit)]:
            self._objects.pop(("replicasets", ns, rs["metadata"]["name"]), None)
            self._pods.pop((ns, rs["metadata"]["name"]), None)

    def _update_replicaset_status(self, ns: str, owned: list[JSON]) -> None:
        for rs in owned:
            if ("replicasets", ns, rs["metadata"]["name"]) not in self._objects:
                continue
            before = copy.deepcopy(rs)
            count = len(self._pods.get((ns, rs["metadata"]["name"]), []))
            ready = self._ready(ns, rs)
            rs["spec"]["replicas"] = count
            rs["status"] = {"replicas": count} | _drop_zero(  # ReplicaSetStatus.replicas has no omitempty
                {
                    "fullyLabeledReplicas": count,
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": rs["metadata"]["generation"],
                }
            )
            if rs != before:
                self._bump(rs)

    def _update_status(self, ns: str, deployment: JSON, new_rs: JSON, owned: list[JSON]) -> None:
        desired = deployment["spec"]["replicas"]
        pods = [len(self._pods.get((ns, rs["metadata"]["name"]), [])) for rs in owned]
        available = sum(self._ready(ns, rs) for rs in owned)
        status = deployment["status"]
        conditions = status.get("conditions", [])
        strategy = deployment["spec"]["strategy"]
        rolling = strategy.get("rollingUpdate") or {}
        max_unavailable = (
            desired
            if strategy.get("type") == "Recreate"
            else _resolve(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        )
        deployment["status"] = _drop_zero(
            {
                "observedGeneration": status.get("observedGeneration"),
                "replicas": sum(pods),
                "updatedReplicas": len(self._pods.get((ns, new_rs["metadata"]["name"]), [])),
                "readyReplicas": available,
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
        now = _now()
        if existing is None:
            existing = {"type": kind, "lastTransitionTime": now}
            conditions.append(existing)
            conditions.sort(key=lambda c: c["type"])
        elif existing["status"] != status:
            existing["lastTransitionTime"] = now
        existing.update(status=status, reason=reason, message=message, lastUpdateTime=now)

    # HTTP

    def _take_failure(self, method: str, path: str) -> _FailureRule | None:
        for rule in self._failures:
            if rule.matches(method, path):
                if rule.after > 0:
                    rule.after -= 1
                    return None
                rule.count -= 1
                if rule.count <= 0:
                    self._failures.remove(rule)
                return rule
        return None

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, JSON]:
        """Answer one request: (HTTP status, JSON body)."""
        url = urlsplit(raw_path)
        path = unquote(url.path).rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append((method, path))
            try:
                if path != "/version" and headers.get("authorization") != f"Bearer {self.token}":
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                rule = self._take_failure(method, path)
                if rule is not None and rule.applied:
                    self._route(method, path, query, headers, body)
                if rule is not None:
                    code = rule.status
                    raise ApiError(code, _REASONS.get(code, "InternalError"), f"stand-in: injected failure {code}")
                return self._route(method, path, query, headers, body)
            except ApiError as error:
                return error.code, error.status()

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, JSON]:
        if query.get("watch") in ("true", "1"):
            raise ApiError(400, "BadRequest", "this Kubernetes stand-in does not support watch; poll instead")
        if method == "GET" and path in _DISCOVERY:
            return 200, _DISCOVERY[path]
        match = _PATH.match(path)
        if not match:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns, resource, name, sub = match["ns"], match["resource"], match["name"], match["sub"]
        if sub not in (None, "status") or (sub and method != "GET"):
            raise ApiError(405, "MethodNotAllowed", f"this stand-in does not serve {method} {path}")
        if name is None:
            if method == "GET":
                items = self._list(resource, ns, query.get("labelSelector"))
                items = [_strip_type(obj) for obj in _field_filter(items, query.get("fieldSelector"))]
                kind = "DeploymentList" if resource == "deployments" else "ReplicaSetList"
                return 200, {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "metadata": {"resourceVersion": str(self._resource_version)},
                    "items": items,
                }
            if method == "POST" and resource == "deployments" and ns is not None:
                created = self._create_deployment(ns, _json_body(body))
                return 201, copy.deepcopy(created)
            raise ApiError(405, "MethodNotAllowed", f"this stand-in does not serve {method} {path}")
        if ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET":
            return 200, copy.deepcopy(self._get(resource, ns, name))
        if method == "PATCH" and resource == "deployments":
            content_type = headers.get("content-type", "").split(";")[0].strip()
            patched = self._patch_deployment(ns, name, content_type, _json_body(body), query.get("dryRun") == "All")
            return 200, copy.deepcopy(patched)
        if method == "DELETE" and resource == "deployments":
            self._delete_deployment(ns, name)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        raise ApiError(405, "MethodNotAllowed", f"this stand-in does not serve {method} {path}")


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_PATH = re.compile(
    r"^/apis/apps/v1(?:/namespaces/(?P<ns>[a-z0-9.-]+))?/(?P<resource>deployments|replicasets)"
    r"(?:/(?P<name>[a-z0-9.-]+)(?:/(?P<sub>[a-z]+))?)?$"
)
_RESOURCES = [
    {
        "name": "deployments",
        "singularName": "deployment",
        "namespaced": True,
        "kind": "Deployment",
        "verbs": ["create", "delete", "get", "list", "patch"],
        "shortNames": ["deploy"],
        "categories": ["all"],
    },
    {
        "name": "replicasets",
        "singularName": "replicaset",
        "namespaced": True,
        "kind": "ReplicaSet",
        "verbs": ["get", "list"],
        "shortNames": ["rs"],
        "categories": ["all"],
    },
]
_APPS_GROUP = {
    "name": "apps",
    "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
}
_DISCOVERY: dict[str, JSON] = {
    "/version": SERVER_VERSION,
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_APPS_GROUP]},
    "/apis/apps": {"kind": "APIGroup", "apiVersion": "v1", **_APPS_GROUP},
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": _RESOURCES,
    },
}


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except json.JSONDecodeError as exc:
        raise ApiError(400, "BadRequest", f"the request body is not JSON: {exc}") from exc


def _strip_type(obj: JSON) -> JSON:
    """List items carry no apiVersion/kind, as the API server sends them."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind")}


def _field_filter(items: list[JSON], selector: str | None) -> Iterator[JSON]:
    wanted: dict[str, str] = {}
    for part in _split_requirements(selector or ""):
        key, _, value = part.partition("=")
        if key.rstrip("=") not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", f'field label not supported: "{key}"')
        wanted[key.rstrip("=").split(".")[1]] = value.lstrip("=")
    for obj in items:
        if all(obj["metadata"].get(k) == v for k, v in wanted.items()):
            yield obj


class _Server(ThreadingHTTPServer):
    """The HTTP server, knowing its stand-in."""

    daemon_threads = True
    standin: KubeStandIn


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as urllib3's connection pool expects."""

    protocol_version = "HTTP/1.1"
    server_version = "kube-standin/1"

    def _serve(self) -> None:
        assert isinstance(self.server, _Server)
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        code, payload = standin.handle(self.command, self.path, headers, body)
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # http.server's naming

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


# --- the local demo ---------------------------------------------------------------------------------


def seed_demo(standin: KubeStandIn, team: str, namespace: str = "default") -> None:
    """Two web-service Deployments of `team` and one unrelated Deployment, all rolled out."""
    labels = {"app": "oncology-webservice", "team": team}
    old_image = "registry.local/oncology-webservice@sha256:" + "0" * 64
    standin.add_deployment(namespace, "oncology-webservice", labels, {"oncology-webservice": old_image}, replicas=2)
    standin.add_deployment(
        namespace,
        "oncology-webservice-canary",
        {**labels, "track": "canary"},
        {"oncology-webservice": old_image},
        replicas=1,
    )
    standin.add_deployment(namespace, "other-service", {"app": "other-service", "team": team}, {"app": "nginx:1.27"})


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted (SIGINT/SIGTERM)."""
    parser = argparse.ArgumentParser(description="Kubernetes API STAND-IN for the local demo (not Kubernetes).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--token", default="standin-token", help="the bearer token clients must send")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig pointing at the stand-in here")
    parser.add_argument("--team", default="ml-platform", help="team label of the seeded Deployments")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--step-interval", type=float, default=0.2, help="seconds between controller steps")
    parser.add_argument("--progress-deadline", type=float, default=None, help="seconds (overrides the spec)")
    parser.add_argument("--fail-image", action="append", default=[], help="pods of this image never get ready")
    parser.add_argument("--hang-image", action="append", default=[], help="as --fail-image, without deadline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    standin = KubeStandIn(
        args.token, port=args.port, step_interval=args.step_interval, progress_deadline=args.progress_deadline
    )
    seed_demo(standin, args.team, args.namespace)
    for image in args.fail_image:
        standin.break_image(image, "fail")
    for image in args.hang_image:
        standin.break_image(image, "hang")
    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with standin:
        if args.kubeconfig:
            standin.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
        sys.stdout.write(f"kube-standin listening on {standin.url}\n")
        sys.stdout.flush()
        log.info("Kubernetes API STAND-IN at %s (kubeconfig: %s)", standin.url, args.kubeconfig)
        stopped.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
