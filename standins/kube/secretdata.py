"""Secrets and ConfigMaps: what the API server makes of them on every write; how the kubelet reads Secrets into a
container's environment.

On create, replace and patch of a Secret, `stringData` is folded into `data` (base64; it wins over a `data` key of the
same name) and never stored, `data` values must be base64, keys must be config keys, `type` defaults to `Opaque` and
cannot change. Not checked: the keys each `type` requires, the 1 MiB limit, `immutable`. A ConfigMap's keys must be
config keys, in `data` or in `binaryData` (base64) but not both, and nothing of an `immutable` one may change; its 1 MiB
limit is not checked.

The kubelet's side follows `makeEnvironmentVariables` (kubernetes `pkg/kubelet/kubelet_pods.go`): the
`envFrom[].secretRef` entries first, in order (keys get the entry's `prefix`; keys that are no environment variable
name are skipped), then `env[]`, which overrides them: `value`, or `valueFrom.secretKeyRef`. A missing Secret or
key is a `ConfigError` with the kubelet's words unless the reference is `optional`. Other sources (ConfigMaps, which
the stand-in stores, `fieldRef`, `resourceFieldRef`) are left out of the environment.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from typing import Any

from standins.kube.exceptions import Cause, bad_request
from standins.kube.validation import IMMUTABLE

JSON = dict[str, Any]
SecretLookup = Callable[[str, str], JSON | None]

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIG_KEY_ERROR = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  "
    "or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # validation.IsEnvVarName of Kubernetes 1.33


class ConfigError(Exception):
    """The container's configuration cannot be made (the kubelet's CreateContainerConfigError)."""


def _config_key_causes(bag: str, keys: Iterable[str]) -> list[Cause]:
    """The keys of `data` (or `binaryData`) that are no config keys (`IsConfigMapKey`)."""
    return [Cause.invalid(f"{bag}[{key}]", key, CONFIG_KEY_ERROR) for key in keys if not _CONFIG_KEY.match(key)]


def _check_base64(kind: str, bag: str, values: dict[str, str]) -> None:
    """400 unless every value is base64 (what a Go `[]byte` decodes from; the schema made them strings)."""
    for key, value in values.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(
                f'{kind} in version "v1" cannot be handled as a {kind}: illegal base64 data in {bag}[{key}]'
            ) from None


def normalize_secret(obj: JSON, previous: JSON | None = None) -> list[Cause]:
    """Fold `stringData` into `data` and default `type` (in place); 400 for data that is no base64, and the field
    errors."""
    data, string_data = obj.get("data") or {}, obj.pop("stringData", None) or {}
    _check_base64("Secret", "data", data)
    data |= {key: base64.b64encode(value.encode()).decode() for key, value in string_data.items()}
    causes = _config_key_causes("data", data)
    if data:
        obj["data"] = data
    else:
        obj.pop("data", None)
    obj["type"] = obj.get("type") or "Opaque"
    if previous is not None and obj["type"] != previous["type"]:
        causes.append(Cause.invalid("type", obj["type"], IMMUTABLE))
    return causes


def configmap_causes(obj: JSON, previous: JSON | None = None) -> list[Cause]:
    """A ConfigMap's field errors (ValidateConfigMap / ValidateConfigMapUpdate): config keys, no key in both `data` and
    `binaryData` (base64, else 400 now), and no change to any of them once `immutable` is set."""
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    _check_base64("ConfigMap", "binaryData", binary)
    causes = _config_key_causes("data", data) + _config_key_causes("binaryData", binary)
    both = [key for key in data if key in binary]
    causes += [Cause.invalid(f"data[{key}]", key, "duplicate of key present in binaryData") for key in both]
    causes += [Cause.invalid(f"binaryData[{key}]", key, "duplicate of key present in data") for key in both]
    if previous is not None and previous.get("immutable"):
        frozen = "field is immutable when `immutable` is set"
        if not obj.get("immutable"):
            causes.append(Cause.forbidden("immutable", frozen))
        causes += [Cause.forbidden(bag, frozen) for bag in ("data", "binaryData") if obj.get(bag) != previous.get(bag)]
    return causes


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
