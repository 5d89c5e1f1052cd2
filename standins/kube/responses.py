"""The HTTP side without state: parse a request, call the backend, serialize the answer as the API server does."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from standins.kube import logs, openapi, urls, watch
from standins.kube.exceptions import ApiError, bad_request, conflict, invalid, not_found, not_served
from standins.kube.faults import Faults
from standins.kube.models import API_VERSIONS, GROUPS, KINDS, MERGE_PATCH, WRITABLE, Backend, Write, patched_copy
from standins.kube.proxy import Reply, ServiceProxy
from standins.kube.schema import KUBERNETES_MINOR
from standins.kube.selectors import field_filter
from standins.kube.tables import format_selector, table, table_version

JSON = dict[str, Any]
SERVER_VERSION = {
    "major": KUBERNETES_MINOR.split(".")[0],
    "minor": KUBERNETES_MINOR.split(".")[1],
    "gitVersion": f"v{KUBERNETES_MINOR}.0-standin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-25T00:00:00Z",
    "goVersion": "none (a Python stand-in)",
    "compiler": "none",
    "platform": "linux/amd64",
}
#: The kinds and versions of what the API answers: the stored kinds, and the namespaces and Scales it makes up.
_KINDS = {**KINDS, "namespaces": "Namespace", "deployments/scale": "Scale"}
_VERSIONS = {**API_VERSIONS, "namespaces": "v1", "deployments/scale": "autoscaling/v1"}
#: The verbs of a writable kind.
_WRITE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource(name: str, kind: str, verbs: list[str], short: str | None, *, category: bool = True) -> JSON:
    """A discovery entry; kinds with a short name are in the `all` category (as kubectl get all shows them)."""
    entry: JSON = {"name": name, "singularName": kind.lower(), "namespaced": True, "kind": kind, "verbs": verbs}
    if short:
        entry["shortNames"] = [short]
    if short and category:
        entry["categories"] = ["all"]
    return entry


def _subresource(name: str, kind: str, verbs: list[str], group_version: tuple[str, str] | None = None) -> JSON:
    """A discovery entry for a subresource (`pods/log`), with the group and version of its kind if they differ."""
    entry: JSON = {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}
    if group_version:
        entry.update(group=group_version[0], version=group_version[1])
    return entry


def _group(name: str) -> JSON:
    """An API group of one version, v1, as `/apis` lists it."""
    version = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"name": name, "versions": [version], "preferredVersion": version}


def _resources(group: str, resources: list[JSON]) -> JSON:
    """The `APIResourceList` of a group's v1."""
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/v1", "resources": resources}


_DISCOVERY: dict[str, JSON] = {
    "/version": SERVER_VERSION,
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            _resource("configmaps", "ConfigMap", _WRITE_VERBS, "cm", category=False),
            _resource("events", "Event", ["get", "list", "watch"], "ev", category=False),
            {**_resource("namespaces", "Namespace", ["get", "list"], "ns", category=False), "namespaced": False},
            _resource("pods", "Pod", ["delete", "get", "list", "watch"], "po"),
            _subresource("pods/log", "Pod", ["get"]),
            _resource("secrets", "Secret", _WRITE_VERBS, None),
            _resource("serviceaccounts", "ServiceAccount", _WRITE_VERBS, "sa", category=False),
            _resource("services", "Service", _WRITE_VERBS, "svc"),
            _subresource("services/proxy", "ServiceProxyOptions", ["create", "delete", "get", "patch", "update"]),
        ],
    },
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group("apps"), _group("policy")]},
    "/apis/apps": {"kind": "APIGroup", "apiVersion": "v1", **_group("apps")},
    "/apis/apps/v1": _resources(
        "apps",
        [
            _resource("deployments", "Deployment", _WRITE_VERBS, "deploy"),
            _subresource("deployments/scale", "Scale", ["get", "patch", "update"], ("autoscaling", "v1")),
            _resource("replicasets", "ReplicaSet", ["get", "list", "watch"], "rs"),
        ],
    ),
    "/apis/policy": {"kind": "APIGroup", "apiVersion": "v1", **_group("policy")},
    "/apis/policy/v1": _resources(
        "policy", [_resource("poddisruptionbudgets", "PodDisruptionBudget", _WRITE_VERBS, "pdb", category=False)]
    ),
}


def _json(status: int, body: JSON, write: Write | None = None) -> Reply:
    """A JSON answer; a write's warnings go into `Warning` headers, as the API server sends them (code 299)."""
    warnings = [("Warning", f"299 - {json.dumps(text)}") for text in (write.warnings if write else [])]
    return Reply(status, json.dumps(body).encode(), headers=warnings)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:  # not JSON, or not even text
        raise bad_request(f"the request body is not JSON: {exc}") from exc


def _object_body(headers: dict[str, str], body: bytes) -> Any:
    """The object of a POST or PUT: JSON only. 415 for another media type, as the protobuf that kubectl's own typed
    clients send (`kubectl create configmap NAME`), which the API server decodes and this stand-in does not."""
    media = headers.get("content-type", "").split(";")[0].strip()
    if media not in ("", "application/json"):
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: application/json "
            f"(this stand-in does not decode {media})",
        )
    return _json_body(body)


def _grace_seconds(query: dict[str, str], body: bytes) -> int | None:
    """A DELETE's `gracePeriodSeconds`: from the DeleteOptions body if it has one, else from the query."""
    options = _json_body(body) if body.strip() else None
    value = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
    if value is None:
        value = query.get("gracePeriodSeconds")
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"gracePeriodSeconds: not an integer: {value!r}") from None


def _strip_type(obj: JSON) -> JSON:
    """List items carry no apiVersion/kind, as the API server sends them."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind")}


def _namespace(name: str) -> JSON:
    """A Namespace: every name is one here (objects are made in any namespace, as if it had been created)."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kube-standin/{name}"))},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def _scale(deployment: JSON) -> JSON:
    """A Deployment's `scale` subresource: an autoscaling/v1 Scale."""
    meta = deployment["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
        "spec": {"replicas": deployment["spec"]["replicas"]},
        "status": {
            "replicas": deployment["status"].get("replicas", 0),
            "selector": format_selector(deployment["spec"]["selector"]),
        },
    }


def _scaled_replicas(current: JSON, scale: Any) -> int:
    """The replicas a new Scale asks for, after the checks the API server makes (name, resourceVersion, range)."""
    meta = scale.get("metadata") if isinstance(scale, dict) else None
    name = current["metadata"]["name"]
    if not isinstance(meta, dict) or meta.get("name") != name:
        raise bad_request(f"the name of the object ({(meta or {}).get('name')}) does not match the name on the URL")
    if meta.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
        raise conflict("deployments", name, "apps")
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(
            f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {replicas!r}: '
            "must be greater than or equal to 0"
        )
    return replicas


class Api:
    """Answers one request at a time: authentication, injected faults, then the handler the URL table names."""

    def __init__(self, backend: Backend, proxy: ServiceProxy, token: str) -> None:
        self.backend = backend
        self.proxy = proxy
        self.token = token
        self.faults = Faults()
        self.requests: list[tuple[str, str]] = []

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request."""
        url = urlsplit(raw_path)
        path = unquote(url.path).rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.backend.lock:
            self.requests.append((method, path))
        try:
            if path != "/version" and headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized")
            rule = self.faults.take(method, path)
            if rule is not None and rule.applied:
                self._route(method, path, url.query, query, headers, body)
            if rule is not None:
                raise ApiError(rule.status, f"stand-in: injected failure {rule.status}")
            return self._route(method, path, url.query, query, headers, body)
        except ApiError as error:
            return _json(error.code, error.status())

    def _route(
        self, method: str, path: str, raw_query: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        if query.get("watch") in ("true", "1"):
            return watch.respond(self.backend, method, path, query, headers.get("accept", ""))
        found = urls.resolve(path)
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        handler, params = found
        if handler == "discovery" and method == "GET":
            return _json(200, _DISCOVERY[path])
        if handler == "openapi" and method == "GET":
            return _json(200, openapi.ROOT if path == "/openapi/v3" else openapi.DOCUMENTS[path])
        if handler == "service_proxy":
            rest = (params["rest"] or "/") + (f"?{raw_query}" if raw_query else "")
            return self.proxy.forward(
                method, str(params["ns"]), str(params["service"]), params["port"], rest, headers, body
            )
        if handler == "item" and params["sub"] == "log" and method == "GET":
            return self._log(str(params["ns"]), str(params["name"]), query)
        if handler == "namespaces" and method == "GET":
            return self._namespaces(params["name"], headers, query)
        with self.backend.lock:
            if handler == "collection":
                return self._collection(method, params["ns"], str(params["resource"]), query, headers, body)
            if handler == "item" and params["ns"]:
                return self._item(
                    method,
                    params["ns"],
                    str(params["resource"]),
                    str(params["name"]),
                    params["sub"],
                    query,
                    headers,
                    body,
                )
        raise not_served(method, path)

    def _table(
        self, resource: str, items: list[JSON], resource_version: str, version: str, query: dict[str, str]
    ) -> Reply:
        """`items` as a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`)."""
        return _json(
            200,
            table(
                resource,
                items,
                resource_version=resource_version,
                api_version=_VERSIONS[resource],
                kind=_KINDS[resource],
                version=version,
                include_object=query.get("includeObject"),
            ),
        )

    def _collection(
        self, method: str, ns: str | None, resource: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        if method == "GET":
            items = self.backend.select(resource, ns, query.get("labelSelector"))
            items = list(field_filter(items, query.get("fieldSelector"), resource))
            version = str(self.backend.resource_version)
            if as_table := table_version(headers.get("accept", "")):
                return self._table(resource, items, version, as_table, query)
            return _json(
                200,
                {
                    "apiVersion": _VERSIONS[resource],
                    "kind": f"{_KINDS[resource]}List",
                    "metadata": {"resourceVersion": version},
                    "items": [_strip_type(obj) for obj in items],
                },
            )
        if method == "POST" and ns is not None and resource in WRITABLE:
            write = Write.of(query)
            created = self.backend.write(resource, ns, _object_body(headers, body), write=write)
            return _json(201, copy.deepcopy(created), write)
        raise not_served(method, resource)

    def _item(
        self,
        method: str,
        ns: str,
        resource: str,
        name: str,
        sub: str | None,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        if resource == "deployments" and sub == "scale":
            return self._scale(method, ns, name, query, headers, body)
        if method == "GET" and sub is None:
            found = self.backend.get(resource, ns, name)
            if as_table := table_version(headers.get("accept", "")):
                return self._table(resource, [found], found["metadata"]["resourceVersion"], as_table, query)
            return _json(200, copy.deepcopy(found))
        if method == "GET" and sub == "status" and resource != "events":
            return _json(200, copy.deepcopy(self.backend.get(resource, ns, name)))
        write = Write.of(query)
        if sub is None and method == "PATCH" and resource in WRITABLE:
            content_type = headers.get("content-type", "").split(";")[0].strip()
            patched = self.backend.patch(resource, ns, name, content_type, _json_body(body), write)
            return _json(200, copy.deepcopy(patched), write)
        if sub is None and method == "PUT" and resource in WRITABLE:
            replaced = self.backend.replace(resource, ns, name, _object_body(headers, body), write)
            return _json(200, copy.deepcopy(replaced), write)
        if sub is None and method == "DELETE" and resource == "pods":
            deleted = self.backend.delete_pod(ns, name, _grace_seconds(query, body), write.dry_run)
            return _json(200, copy.deepcopy(deleted))
        if sub is None and method == "DELETE" and resource in WRITABLE:
            gone = self.backend.get(resource, ns, name) if write.dry_run else self.backend.delete(resource, ns, name)
            meta = gone["metadata"]
            details = {"name": name, "group": GROUPS[resource], "kind": resource, "uid": meta["uid"]}
            details = {k: v for k, v in details.items() if v}  # an empty group is omitted
            return _json(
                200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
            )
        raise not_served(method, f"{resource}/{name}")

    def _namespaces(self, name: str | None, headers: dict[str, str], query: dict[str, str]) -> Reply:
        """GET one namespace, or the list of those in use (and `default`)."""
        with self.backend.lock:
            used = {"default"} | {ns for _, ns, _ in self.backend.objects} | {ns for ns, _ in self.backend.pods}
            version = str(self.backend.resource_version)
        items = [_namespace(name)] if name else [_namespace(ns) for ns in sorted(used)]
        if as_table := table_version(headers.get("accept", "")):
            return self._table("namespaces", items, version, as_table, query)
        if name:
            return _json(200, items[0])
        listed = {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": version}}
        return _json(200, {**listed, "items": [_strip_type(ns) for ns in items]})

    def _scale(
        self,
        method: str,
        ns: str,
        name: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        """GET, PUT or PATCH `deployments/NAME/scale`: a change of `spec.replicas` is a change of the Deployment."""
        current = self.backend.get("deployments", ns, name)
        if method == "GET":
            scale = _scale(current)
            if as_table := table_version(headers.get("accept", "")):  # kubectl get deploy NAME --subresource=scale
                return self._table("deployments/scale", [scale], scale["metadata"]["resourceVersion"], as_table, query)
            return _json(200, scale)
        if method == "PUT":
            wanted = _object_body(headers, body)
        elif method == "PATCH":
            content_type = headers.get("content-type", "").split(";")[0].strip()
            wanted = patched_copy(_scale(current), content_type, _json_body(body))
        else:
            raise not_served(method, f"deployments/{name}/scale")
        replicas = _scaled_replicas(current, wanted)
        write = Write(dry_run=query.get("dryRun") == "All")
        patched = self.backend.patch("deployments", ns, name, MERGE_PATCH, {"spec": {"replicas": replicas}}, write)
        return _json(200, _scale(patched))

    def _log(self, ns: str, name: str, query: dict[str, str]) -> Reply:
        """A container's log (`standins.kube.logs`), read from the runtime outside the backend's lock."""
        options = logs.LogOptions.parse(query)
        with self.backend.lock:
            pod = self.backend.pods.get((ns, name))
            if pod is None or pod.gone:
                raise not_found("pods", name)
            container = logs.container_of(pod, options.container)
            running, kept = logs.source(pod, container, options.previous)
        runtime = self.proxy.runtime
        if running is None:
            return Reply(200, options.answer(kept), "text/plain")
        if not options.follow:
            return Reply(200, options.answer(runtime.logs(running)), "text/plain")

        def still_running() -> bool:
            with self.backend.lock:
                return container.container_id == running and not pod.gone

        def read() -> list[str]:
            with self.backend.lock:
                kept = container.last_log if container.container_id != running else None
            return kept if kept is not None else runtime.logs(running)

        return Reply(200, b"", "text/plain", chunks=logs.follow(read, options, still_running))
