"""The three PATCH formats of the API server: strategic merge (ours, for what the client sends), JSON merge
patch (RFC 7386) and JSON patch (RFC 6902, by the `jsonpatch` library)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from standins.kube.exceptions import bad_request, invalid

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


def strategic_merge(original: Any, patch: Any, key: str | None = None) -> Any:
    """Apply a strategic-merge patch as apimachinery's `strategicpatch` does: maps merge, `null` deletes, keyed lists
    merge by their merge key; the directives `$patch` (`replace`, `delete`, `merge`), `$retainKeys`,
    `$setElementOrder/<list>` (the order kubectl wants a keyed list in) and `$deleteFromPrimitiveList/<list>`."""
    if isinstance(patch, dict):
        directive = patch.get("$patch", "merge")
        if directive == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if directive == "delete":
            return None
        if directive != "merge":
            raise invalid(f"strategic merge patch: unknown patch type {directive!r} in map")
        result = dict(original) if isinstance(original, dict) else {}
        for name, value in patch.items():
            if name.startswith("$"):
                continue
            if value is None:
                result.pop(name, None)
                continue
            merged = strategic_merge(result.get(name), value, name)
            if merged is None:
                result.pop(name, None)
            else:
                result[name] = merged
        for name, value in patch.items():
            field = name.partition("/")[2]
            if name.startswith("$deleteFromPrimitiveList/") and isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
            elif name.startswith("$setElementOrder/") and field in _MERGE_KEYS and isinstance(result.get(field), list):
                result[field] = _ordered(result[field], value, original, field)
        if "$retainKeys" in patch:
            keep = set(patch["$retainKeys"] or [])
            result = {k: v for k, v in result.items() if k in keep}
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
            raise invalid(f"strategic merge patch: map: {item!r} does not contain declared merge key: {merge_key}")
        index = next(
            (i for i, old in enumerate(result) if isinstance(old, dict) and old.get(merge_key) == item[merge_key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge({}, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def _ordered(merged: list[Any], order: Any, original: Any, field: str) -> list[Any]:
    """A merged keyed list in the order `$setElementOrder` gives (apimachinery's normalizeElementOrder): the items it
    names in its order, the others in the server's order, the two interleaved by their place on the server."""
    merge_key = _MERGE_KEYS[field]
    keys = [item.get(merge_key) for item in order if isinstance(item, dict)] if isinstance(order, list) else []
    server = [item.get(merge_key) for item in original if isinstance(item, dict)] if isinstance(original, list) else []
    named = sorted((i for i in merged if i.get(merge_key) in keys), key=lambda i: keys.index(i.get(merge_key)))
    others = [i for i in merged if i.get(merge_key) not in keys]
    result: list[Any] = []
    while named or others:
        if not others or (
            named
            and named[0].get(merge_key) in server
            and others[0].get(merge_key) in server
            and server.index(named[0].get(merge_key)) < server.index(others[0].get(merge_key))
        ):
            result.append(named.pop(0))
        else:
            result.append(others.pop(0))
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


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (with `test`) to a copy; all or nothing; 422 when it does not apply."""
    if not isinstance(operations, list):
        raise bad_request("json patch: the body must be a list of operations")
    try:
        return jsonpatch.apply_patch(copy.deepcopy(doc), operations)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise invalid(f"json patch: test failed: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError, TypeError) as exc:
        raise invalid(f"json patch: {exc}") from exc
