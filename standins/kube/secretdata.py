"""Secrets: what the API server makes of one on every write, and how the kubelet reads them into a container's env.

On create, replace and patch, `stringData` is folded into `data` (base64; it wins over a `data` key of the same
name) and never stored, `data` values must be base64, keys must be config keys, `type` defaults to `Opaque` and
cannot change. Not checked: the keys each `type` requires, the 1 MiB limit, `immutable`.

The kubelet's side follows `makeEnvironmentVariables` (kubernetes `pkg/kubelet/kubelet_pods.go`): the
`envFrom[].secretRef` entries first, in order (keys get the entry's `prefix`; keys that are no environment variable
name are skipped), then `env[]`, which overrides them: `value`, or `valueFrom.secretKeyRef`. A missing Secret or
key is a `ConfigError` with the kubelet's words unless the reference is `optional`. Other sources (ConfigMaps,
`fieldRef`, `resourceFieldRef`) are not served by the stand-in and are left out of the environment.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from standins.kube.exceptions import Cause, bad_request, invalid_object

JSON = dict[str, Any]
SecretLookup = Callable[[str, str], JSON | None]

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # validation.IsEnvVarName of Kubernetes 1.33


class ConfigError(Exception):
    """The container's configuration cannot be made (the kubelet's CreateContainerConfigError)."""


def normalize_secret(obj: JSON, previous: JSON | None = None) -> None:
    """Fold `stringData` into `data`, default `type`, and refuse what the API server refuses (in place)."""
    name = obj["metadata"]["name"]
    cannot = 'Secret in version "v1" cannot be handled as a Secret: '
    data, string_data = obj.get("data") or {}, obj.pop("stringData", None) or {}
    if not isinstance(data, dict) or not isinstance(string_data, dict):
        raise bad_request(f"{cannot}data and stringData must be objects")
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise bad_request(f"{cannot}illegal base64 data in data[{key}]") from None
    for key, value in string_data.items():
        if not isinstance(value, str):
            raise bad_request(f"{cannot}stringData[{key}] must be a string")
        data[key] = base64.b64encode(value.encode()).decode()
    causes = [
        Cause.invalid(
            f"data[{key}]",
            key,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(regex used for validation is '[-._a-zA-Z0-9]+')",
        )
        for key in data
        if not _CONFIG_KEY.match(key)
    ]
    if data:
        obj["data"] = data
    else:
        obj.pop("data", None)
    obj["type"] = obj.get("type") or "Opaque"
    if previous is not None and obj["type"] != previous["type"]:
        causes.append(Cause.invalid("type", obj["type"], "field is immutable"))
    if causes:
        raise invalid_object("Secret", name, causes)


def _decoded(value: str) -> str:
    return base64.b64decode(value).decode(errors="replace")


def container_env(container: JSON, namespace: str, lookup: SecretLookup) -> dict[str, str]:
    """The environment of a container, as the kubelet makes it (see the module docstring)."""
    seen: dict[str, JSON | None] = {}

    def secret(name: str, optional: bool) -> JSON | None:
        if name not in seen:
            seen[name] = lookup(namespace, name)
        if seen[name] is None and not optional:
            raise ConfigError(f'secret "{name}" not found')
        return seen[name]

    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef")
        if ref is None or (found := secret(ref["name"], bool(ref.get("optional")))) is None:
            continue
        for key, value in (found.get("data") or {}).items():
            name = f"{source.get('prefix') or ''}{key}"
            if _ENV_NAME.match(name):
                env[name] = _decoded(value)
    for entry in container.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if "valueFrom" not in entry:
            env[entry["name"]] = str(entry.get("value", ""))
        elif ref is not None and (found := secret(ref["name"], bool(ref.get("optional")))) is not None:
            value = (found.get("data") or {}).get(ref["key"])
            if value is not None:
                env[entry["name"]] = _decoded(value)
            elif not ref.get("optional"):
                raise ConfigError(f"couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}")
    return env
