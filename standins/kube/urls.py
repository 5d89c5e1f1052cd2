"""The paths the stand-in serves: a table of patterns to handler names (`standins.kube.responses.Api`)."""

from __future__ import annotations

import re

_NS = r"(?P<ns>[a-z0-9][a-z0-9.-]*)"
_NAME = r"(?P<name>[a-z0-9][a-z0-9.-]*)"

URLS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/(?:version|api|api/v1|apis|apis/apps|apis/apps/v1)$"), "discovery"),
    (re.compile(r"^/openapi/v3(?:/api/v1|/apis/apps/v1)?$"), "openapi"),
    (
        re.compile(
            rf"^/api/v1/namespaces/{_NS}/services/(?P<service>[a-z0-9.-]+)(?::(?P<port>[A-Za-z0-9-]+))?"
            r"/proxy(?P<rest>/.*)?$"
        ),
        "service_proxy",
    ),
    (re.compile(rf"^/apis/apps/v1(?:/namespaces/{_NS})?/(?P<resource>deployments|replicasets)$"), "collection"),
    (re.compile(rf"^/api/v1/namespaces(?:/{_NAME})?$"), "namespaces"),
    (re.compile(rf"^/api/v1(?:/namespaces/{_NS})?/(?P<resource>pods|services|secrets|events)$"), "collection"),
    (
        re.compile(
            rf"^/apis/apps/v1/namespaces/{_NS}/(?P<resource>deployments|replicasets)/{_NAME}(?:/(?P<sub>status|scale))?$"
        ),
        "item",
    ),
    (
        re.compile(
            rf"^/api/v1/namespaces/{_NS}/(?P<resource>pods|services|secrets|events)/{_NAME}(?:/(?P<sub>status|log))?$"
        ),
        "item",
    ),
]


def resolve(path: str) -> tuple[str, dict[str, str | None]] | None:
    """The handler name and the path's parameters, or None for an unknown path."""
    for pattern, handler in URLS:
        if match := pattern.match(path):
            return handler, match.groupdict()
    return None
