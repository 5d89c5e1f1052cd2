"""`/openapi/v3`: as much of the API server's OpenAPI v3 documents as kubectl reads before it writes.

`kubectl create`, `apply` and `replace` validate what they send (`--validate=strict`, the default): if the OpenAPI
document of the object's group-version lists its PATCH operation with a `fieldValidation` query parameter, kubectl
leaves validation to the server and sends `fieldValidation=Strict` (what `standins.kube.schema.decode` honours);
without any OpenAPI document it refuses to write ("failed to download openapi"). The documents list the stand-in's
writable kinds with those operations, and no schemas: kubectl then builds `apply`'s strategic-merge patches from the
types compiled into it, as it does for built-in kinds when a schema is missing. `kubectl explain` needs the schemas
and is not served.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from standins.kube.models import GROUPS, KINDS, WRITABLE

JSON = dict[str, Any]
#: The writable resources by group-version path (`api/v1`, `apis/apps/v1`).
_WRITABLE = {
    f"apis/{group}/v1" if group else "api/v1": [resource for resource in WRITABLE if GROUPS[resource] == group]
    for group in dict.fromkeys(GROUPS[resource] for resource in WRITABLE)
}
_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "How the server treats unknown or duplicate fields: Ignore, Warn (the default) or Strict.",
    "schema": {"type": "string", "uniqueItems": True},
}


def _operation(group: str, kind: str, verb: str) -> JSON:
    return {
        "operationId": f"{verb}Namespaced{kind}",
        "parameters": [_FIELD_VALIDATION],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": group, "version": "v1", "kind": kind},
    }


def _document(group_version: str) -> JSON:
    paths: JSON = {}
    for resource in _WRITABLE[group_version]:
        group, kind = GROUPS[resource], KINDS[resource]
        base = f"/{group_version}/namespaces/{{namespace}}/{resource}"
        paths[base] = {"post": _operation(group, kind, "post")}
        paths[f"{base}/{{name}}"] = {"put": _operation(group, kind, "put"), "patch": _operation(group, kind, "patch")}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (stand-in)", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


DOCUMENTS = {f"/openapi/v3/{gv}": _document(gv) for gv in _WRITABLE}
ROOT = {
    "paths": {
        path.removeprefix("/openapi/v3/"): {
            "serverRelativeURL": f"{path}?hash={hashlib.sha512(json.dumps(doc).encode()).hexdigest()[:64].upper()}"
        }
        for path, doc in DOCUMENTS.items()
    }
}
