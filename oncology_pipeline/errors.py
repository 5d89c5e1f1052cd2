"""Our exceptions, and the one place that decides which failures are transient (worth a retry)."""

from __future__ import annotations

import socket


class PipelineError(Exception):
    """Base class: the message says what happened and what to do."""


class ConfigurationError(PipelineError):
    """Wrong settings, credentials or permissions, or a missing bucket: fix the configuration, don't retry."""


class TransientError(PipelineError):
    """A failure that may pass on its own (throttling, 5xx, timeout, connection reset): retry."""


class SuiteFailed(PipelineError):
    """A test suite failed: the model is not published."""


class PushFailed(PipelineError):
    """The registry refused or broke off an image push."""


class BuildFailed(PipelineError):
    """The Docker image build failed."""


class SmokeTestFailed(PipelineError):
    """The freshly built image did not serve the bundle's own predictions."""


class ClusterError(PipelineError):
    """The Kubernetes API refused a request or holds no matching objects."""


class RolloutFailed(PipelineError):
    """A rollout failed or timed out; the previous image was put back."""


class VerificationFailed(PipelineError):
    """The rolled-out service does not serve the expected model or answers (the previous image is put back)."""


class PromotionConflict(PipelineError):
    """Another writer moved the production pointer since this run read it."""


_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}
_TRANSIENT_AWS_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
}


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: throttling, 5xx, timeouts, connection errors."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, PipelineError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
        return True
    try:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )
    except ImportError:  # pragma: no cover - botocore is a pipeline dependency
        return False
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error.get("Code", "") in _TRANSIENT_AWS_CODES or status in _TRANSIENT_HTTP
    code = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return isinstance(code, int) and code in _TRANSIENT_HTTP
