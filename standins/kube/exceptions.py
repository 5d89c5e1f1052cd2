"""API errors of the Kubernetes stand-in, answered as `Status` objects (one class, a constructor per reason)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error answered to the client as a Kubernetes `Status` object."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or REASONS.get(code, "InternalError")
        self.message = message
        self.details = details

    def status(self) -> JSON:
        """The `Status` body the API server would send."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """404 for one named object, worded as the API server words it."""
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(404, f'{qualified} "{name}" not found', details={"name": name, "group": group, "kind": resource})


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    """409 for a create of an existing name."""
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        409, f'{qualified} "{name}" already exists', details={"name": name, "group": group, "kind": resource}
    )


def conflict(resource: str, name: str, group: str = "") -> ApiError:
    """409 for a write that names a `metadata.resourceVersion` other than the stored one (optimistic concurrency)."""
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        reason="Conflict",
        details={"name": name, "group": group, "kind": resource},
    )


def go_value(value: Any) -> str:
    """A value in a field error as the API server prints it: strings quoted, numbers bare, the rest as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Cause:
    """One field error of an invalid object (a `StatusCause`), as apimachinery's `field.Error` words it."""

    field: str
    reason: str
    message: str

    @classmethod
    def required(cls, field: str, detail: str = "") -> Cause:
        return cls(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))

    @classmethod
    def invalid(cls, field: str, value: Any, detail: str) -> Cause:
        return cls(field, "FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}")

    @classmethod
    def not_supported(cls, field: str, value: Any, supported: list[str]) -> Cause:
        choices = ", ".join(json.dumps(choice) for choice in supported)
        return cls(
            field, "FieldValueNotSupported", f"Unsupported value: {go_value(value)}: supported values: {choices}"
        )

    @classmethod
    def forbidden(cls, field: str, detail: str) -> Cause:
        return cls(field, "FieldValueForbidden", f"Forbidden: {detail}")

    @classmethod
    def duplicate(cls, field: str, value: Any) -> Cause:
        return cls(field, "FieldValueDuplicate", f"Duplicate value: {go_value(value)}")

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def invalid(message: str) -> ApiError:
    """422 for a patch that cannot be applied."""
    return ApiError(422, message)


def invalid_object(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    """422 `Invalid` for an object that fails validation: the message and `details.causes` as the API server sends
    them (`Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: ...`; several causes in brackets)."""
    qualified = f"{kind}.{group}" if group else kind
    errors = str(causes[0]) if len(causes) == 1 else "[" + ", ".join(map(str, causes)) + "]"
    details: JSON = {"name": name, "group": group, "kind": kind}
    details["causes"] = [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes]
    return ApiError(
        422, f'{qualified} "{name}" is invalid: {errors}', details={k: v for k, v in details.items() if v != ""}
    )


def bad_request(message: str) -> ApiError:
    """400 for a request the server cannot parse."""
    return ApiError(400, message)


def not_served(method: str, path: str) -> ApiError:
    """405 for a verb this stand-in does not serve on a known path."""
    return ApiError(405, f"this stand-in does not serve {method} {path}")
