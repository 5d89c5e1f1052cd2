"""The OpenAPI schemas of the Kubernetes minor the stand-in claims, and the API server's decoding against them.

The schemas are kubernetes-validate's strict JSON schemas (no unknown field anywhere) of `KUBERNETES_MINOR`. What
the stand-in stores and answers validates against them (`errors`; a test walks every object it answers). What a
client sends is decoded as the API server decodes a body into its Go types (`decode`):

- an unknown field is refused with `fieldValidation=Strict` (400 `strict decoding error: unknown field "spec.x"`,
  what kubectl asks for), or dropped with a warning (`Warn`, the server's default) or silently (`Ignore`);
- a value of the wrong JSON type cannot be decoded at all (400 `cannot unmarshal string into ... of type int32`);
- `null` is the field's zero value: the key is dropped, as a Go struct re-encoded with `omitempty` drops it.

Required fields and allowed values are the business of the validation (`standins.kube.validation`); `decode` hands
those schema errors over as causes.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import Draft202012Validator
from referencing import Registry, Resource

from standins.kube.exceptions import Cause, bad_request

JSON = dict[str, Any]
#: The Kubernetes minor the stand-in claims to be (`/version`) and whose schemas it keeps to.
KUBERNETES_MINOR = "1.36"
FIELD_VALIDATIONS = ("Strict", "Warn", "Ignore")
_SCHEMAS = importlib.resources.files("kubernetes_validate").joinpath(
    "kubernetes-json-schema", f"v{KUBERNETES_MINOR}.0-local-strict"
)
_GO_TYPES = {"integer": "int32", "string": "string", "boolean": "bool", "object": "struct", "array": "slice"}
_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "bool", list: "array", dict: "object"}


def _load(name: str) -> JSON:
    loaded: JSON = json.loads(_SCHEMAS.joinpath(name).read_text())
    return loaded


@functools.cache
def _registry() -> Registry:
    """The shared definitions every kind's schema refers to (1.6 MB: read once)."""
    return Resource.from_contents(_load("_definitions.json")) @ Registry()


@functools.cache
def validator(api_version: str, kind: str) -> Draft202012Validator:
    """The strict validator of one kind (`apps/v1`, `Deployment`)."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1 -> apps-v1, as the files are named
    schema = _load(f"{kind.lower()}-{group_version}.json")
    return Draft202012Validator(schema, registry=Resource.from_contents(schema) @ _registry())


def field_path(path: Any) -> str:
    """A JSON path (`spec`, `containers`, 0, `name`) as the API server names fields: `spec.containers[0].name`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def errors(obj: JSON) -> list[ValidationError]:
    """Every way `obj` (with its apiVersion and kind) breaks its kind's strict schema, in document order."""
    found = validator(obj["apiVersion"], obj["kind"]).iter_errors(obj)
    return sorted(found, key=lambda error: [str(part) for part in error.absolute_path])


def drop_nulls(value: Any) -> Any:
    """`value` without the `null` members of its objects, at any depth (what decoding into Go types leaves)."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(item) for item in value]
    return value


def _unknown_fields(error: ValidationError) -> list[list[Any]]:
    """The paths of the fields an `additionalProperties: false` error is about."""
    known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [[*error.absolute_path, name] for name in instance if name not in known]


def _remove(obj: JSON, path: list[Any]) -> None:
    target: Any = obj
    for part in path[:-1]:
        target = target[part]
    target.pop(path[-1], None)


def decode(obj: JSON, field_validation: str | None) -> tuple[JSON, list[str], list[Cause]]:
    """Decode a client's object (with apiVersion and kind) as the API server does (see the module docstring): the
    object as stored, the warnings for the `Warning` header, and what the schema says is missing or not allowed."""
    directive = field_validation or "Warn"
    if directive not in FIELD_VALIDATIONS:
        raise bad_request(f'fieldValidation: Unsupported value: "{directive}": supported values: Strict, Warn, Ignore')
    decoded = drop_nulls(obj)
    cannot = f'{obj["kind"]} in version "{obj["apiVersion"].rpartition("/")[2]}" cannot be handled as a {obj["kind"]}'
    unknown: list[list[Any]] = []
    causes: list[Cause] = []
    for error in errors(decoded):
        where = field_path(error.absolute_path)
        if error.validator == "additionalProperties":
            unknown += _unknown_fields(error)
        elif error.validator == "type":
            wanted = error.validator_value[0] if isinstance(error.validator_value, list) else error.validator_value
            found = _JSON_TYPES.get(type(error.instance), "value")
            raise bad_request(
                f"{cannot}: json: cannot unmarshal {found} into Go struct field {where} of type "
                f"{_GO_TYPES.get(str(wanted), str(wanted))}"
            )
        elif error.validator == "required":
            missing = re.match(r"'([^']+)' is a required property", error.message)
            name = missing[1] if missing else "?"
            causes.append(Cause.required(field_path([*error.absolute_path, name])))
        elif error.validator == "enum":
            causes.append(Cause.not_supported(where, error.instance, [str(v) for v in error.validator_value]))
        else:
            causes.append(Cause.invalid(where, error.instance, error.message))
    if unknown and directive == "Strict":
        fields = ", ".join(f'unknown field "{field_path(path)}"' for path in unknown)
        raise bad_request(f"{cannot}: strict decoding error: {fields}")
    for path in unknown:
        _remove(decoded, path)
    warnings = [f'unknown field "{field_path(path)}"' for path in unknown] if directive == "Warn" else []
    return decoded, warnings, causes
