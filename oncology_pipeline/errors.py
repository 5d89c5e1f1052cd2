"""Our exceptions, and the one place that decides which failures are transient (worth a retry): by exception
class and status code (`is_transient`), or by the words of a tool's error output (`is_transient_message`)."""

from __future__ import annotations

import re
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


#: What pip, uv and the Docker engine / registry write when the network, not the request, failed ("timeout" also
#: finds pip's ReadTimeoutError and Go's "i/o timeout", `_EOF` Go's "unexpected EOF").
_TRANSIENT_WORDS = (
    "connectionerror",
    "connection refused",
    "connection reset",
    "timeout",
    "timed out",
    "temporary failure in name resolution",
    "no such host",
    "max retries exceeded",
    "broken pipe",
    "toomanyrequests",
    "too many requests",
    "service unavailable",
    "bad gateway",
    "internal server error",
)
#: A 5xx only where it is an HTTP status: after "HTTP", "HTTP/1.1", "status", "code" or "error" (Docker's
#: "received unexpected HTTP status: 521 ...", pip's "HTTP error 503 while getting"), or before "error" / "server error"
#: (urllib3's "too many 503 error responses", requests' "503 Server Error"). Not a bare number: pip's crash tracebacks
#: are full of "line 5xx", which made a pip crash (a mistyped index URL, say) look like the index answering 5xx.
_HTTP_5XX = re.compile(r"\b(?:http(?:/[\d.]+)?|status|code|error)\W{0,3}5\d\d\b|\b5\d\d (?:server )?error\b")
_EOF = re.compile(r"\beof\b")  # Go's io.EOF: the registry closed the connection in the middle of a request


def is_transient_message(text: str) -> bool:
    """True when a tool's error output (pip, uv, a registry's push error) says the network failed: a refused or
    reset connection, a timeout, a name that did not resolve, throttling or a 5xx answer."""
    lowered = text.lower()
    return bool(_HTTP_5XX.search(lowered) or _EOF.search(lowered)) or any(w in lowered for w in _TRANSIENT_WORDS)


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
