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
            raise invalid(f"strategic merge patch: list items need the merge key {merge_key!r}: {item!r}")
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
