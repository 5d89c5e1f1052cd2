"""The paths the stand-in serves: a table of patterns to handler names (`standins.kube.responses.Api`).

Each group's collections and objects are those `standins.kube.models.GROUPS` puts in it, with the subresources
served in that group.
"""

from __future__ import annotations

import re

from standins.kube.models import GROUPS

_NS = r"(?P<ns>[a-z0-9][a-z0-9.-]*)"
_NAME = r"(?P<name>[a-z0-9][a-z0-9.-]*)"
#: The path of each group's v1 and the subresources served there.
_APIS = {
    "": ("/api/v1", "status|log"),
    "apps": ("/apis/apps/v1", "status|scale"),
    "policy": ("/apis/policy/v1", "status"),
}


def _resources(group: str) -> str:
    return "|".join(resource for resource, of in GROUPS.items() if of == group)


URLS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"^/(?:version|api|api/v1|apis|apis/apps|apis/apps/v1|apis/policy|apis/policy/v1)$"),
        "discovery",
    ),
    (re.compile(r"^/openapi/v3(?:/api/v1|/apis/apps/v1|/apis/policy/v1)?$"), "openapi"),
    (
        re.compile(
            rf"^/api/v1/namespaces/{_NS}/services/(?P<service>[a-z0-9.-]+)(?::(?P<port>[A-Za-z0-9-]+))?"
            r"/proxy(?P<rest>/.*)?$"
        ),
        "service_proxy",
    ),
    (re.compile(rf"^/api/v1/namespaces(?:/{_NAME})?$"), "namespaces"),
    *(
        (re.compile(rf"^{path}(?:/namespaces/{_NS})?/(?P<resource>{_resources(group)})$"), "collection")
        for group, (path, _) in _APIS.items()
    ),
    *(
        (
            re.compile(rf"^{path}/namespaces/{_NS}/(?P<resource>{_resources(group)})/{_NAME}(?:/(?P<sub>{subs}))?$"),
            "item",
        )
        for group, (path, subs) in _APIS.items()
    ),
]


def resolve(path: str) -> tuple[str, dict[str, str | None]] | None:
    """The handler name and the path's parameters, or None for an unknown path."""
    for pattern, handler in URLS:
        if match := pattern.match(path):
            return handler, match.groupdict()
    return None
