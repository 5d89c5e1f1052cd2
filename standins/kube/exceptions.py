"""API errors of the Kubernetes stand-in, answered as `Status` objects (one class, a constructor per reason)."""

from __future__ import annotations

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


def invalid(message: str) -> ApiError:
    """422 for an object or patch that fails validation."""
    return ApiError(422, message)


def bad_request(message: str) -> ApiError:
    """400 for a request the server cannot parse."""
    return ApiError(400, message)


def not_served(method: str, path: str) -> ApiError:
    """405 for a verb this stand-in does not serve on a known path."""
    return ApiError(405, f"this stand-in does not serve {method} {path}")
