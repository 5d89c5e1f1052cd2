"""The HTTP side without state: parse a request, call the backend, serialize the answer as the API server does."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from standins.kube import urls
from standins.kube.exceptions import ApiError, bad_request, not_served
from standins.kube.faults import Faults
from standins.kube.models import GROUPS, Backend
from standins.kube.proxy import Reply, ServiceProxy
from standins.kube.selectors import field_filter

JSON = dict[str, Any]
SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-standin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-25T00:00:00Z",
    "goVersion": "none (a Python stand-in)",
    "compiler": "none",
    "platform": "linux/amd64",
}
_KINDS = {
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "pods": "Pod",
    "services": "Service",
    "secrets": "Secret",
}
_VERSIONS = {"deployments": "apps/v1", "replicasets": "apps/v1", "pods": "v1", "services": "v1", "secrets": "v1"}


def _resource(name: str, kind: str, verbs: list[str], short: str | None) -> JSON:
    """A discovery entry; kinds with a short name are in the `all` category (as kubectl get all shows them)."""
    entry: JSON = {"name": name, "singularName": kind.lower(), "namespaced": True, "kind": kind, "verbs": verbs}
    if short:
        entry.update(shortNames=[short], categories=["all"])
    return entry


_APPS_GROUP = {
    "name": "apps",
    "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
}
_DISCOVERY: dict[str, JSON] = {
    "/version": SERVER_VERSION,
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            _resource("pods", "Pod", ["delete", "get", "list"], "po"),
            _resource("secrets", "Secret", ["create", "delete", "get", "list", "patch", "update"], None),
            _resource("services", "Service", ["create", "get", "list"], "svc"),
            {
                "name": "services/proxy",
                "singularName": "",
                "namespaced": True,
                "kind": "ServiceProxyOptions",
                "verbs": ["create", "delete", "get", "patch", "update"],
            },
        ],
    },
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_APPS_GROUP]},
    "/apis/apps": {"kind": "APIGroup", "apiVersion": "v1", **_APPS_GROUP},
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": [
            _resource("deployments", "Deployment", ["create", "delete", "get", "list", "patch"], "deploy"),
            _resource("replicasets", "ReplicaSet", ["get", "list"], "rs"),
        ],
    },
}


def _json(status: int, body: JSON) -> Reply:
    return Reply(status, json.dumps(body).encode())


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except json.JSONDecodeError as exc:
        raise bad_request(f"the request body is not JSON: {exc}") from exc


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
            raise bad_request("this Kubernetes stand-in does not support watch; poll instead")
        found = urls.resolve(path)
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        handler, params = found
        if handler == "discovery" and method == "GET":
            return _json(200, _DISCOVERY[path])
        if handler == "service_proxy":
            rest = (params["rest"] or "/") + (f"?{raw_query}" if raw_query else "")
            return self.proxy.forward(
                method, str(params["ns"]), str(params["service"]), params["port"], rest, headers, body
            )
        with self.backend.lock:
            if handler == "collection":
                return self._collection(method, params["ns"], str(params["resource"]), query, body)
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

    def _collection(self, method: str, ns: str | None, resource: str, query: dict[str, str], body: bytes) -> Reply:
        if method == "GET":
            items = self.backend.select(resource, ns, query.get("labelSelector"))
            items = [_strip_type(obj) for obj in field_filter(items, query.get("fieldSelector"))]
            return _json(
                200,
                {
                    "apiVersion": _VERSIONS[resource],
                    "kind": f"{_KINDS[resource]}List",
                    "metadata": {"resourceVersion": str(self.backend.resource_version)},
                    "items": items,
                },
            )
        if method == "POST" and ns is not None and resource == "deployments":
            return _json(201, copy.deepcopy(self.backend.create_deployment(ns, _json_body(body))))
        if method == "POST" and ns is not None and resource == "services":
            return _json(201, copy.deepcopy(self.backend.create_service(ns, _json_body(body))))
        if method == "POST" and ns is not None and resource == "secrets":
            created = self.backend.write_secret(ns, _json_body(body), dry_run=query.get("dryRun") == "All")
            return _json(201, copy.deepcopy(created))
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
        if method == "GET":
            return _json(200, copy.deepcopy(self.backend.get(resource, ns, name)))
        dry_run = query.get("dryRun") == "All"
        if sub is None and method == "PATCH" and resource in ("deployments", "secrets"):
            content_type = headers.get("content-type", "").split(";")[0].strip()
            patch = self.backend.patch_deployment if resource == "deployments" else self.backend.patch_secret
            return _json(200, copy.deepcopy(patch(ns, name, content_type, _json_body(body), dry_run)))
        if sub is None and method == "PUT" and resource == "secrets":
            return _json(200, copy.deepcopy(self.backend.replace_secret(ns, name, _json_body(body), dry_run)))
        if sub is None and method == "DELETE" and resource == "pods":
            deleted = self.backend.delete_pod(ns, name, _grace_seconds(query, body), dry_run)
            return _json(200, copy.deepcopy(deleted))
        if sub is None and method == "DELETE" and resource in ("deployments", "secrets"):
            delete = self.backend.delete_deployment if resource == "deployments" else self.backend.delete_secret
            meta = delete(ns, name)["metadata"]
            details = {"name": name, "group": GROUPS[resource], "kind": resource, "uid": meta["uid"]}
            details = {k: v for k, v in details.items() if v}  # an empty group is omitted
            return _json(
                200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
            )
        raise not_served(method, f"{resource}/{name}")
