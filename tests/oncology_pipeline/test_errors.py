"""The one place that decides what is worth a retry."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from kubernetes.client.exceptions import ApiException

from oncology_pipeline.errors import (
    BuildFailed,
    ClusterError,
    ConfigurationError,
    PipelineError,
    PushFailed,
    RolloutFailed,
    SmokeTestFailed,
    SuiteFailed,
    TransientError,
    is_transient,
)


def client_error(code: str | None, status: int | None, operation: str = "GetObject") -> ClientError:
    """A botocore ClientError as botocore builds it from an AWS answer."""
    response: dict[str, object] = {}
    if code is not None:
        response["Error"] = {"Code": code, "Message": f"{code} happened"}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("TooManyRequestsException", None),
        ("SlowDown", 503),
        ("SlowDown", None),
        ("RequestTimeout", 400),
        ("InternalError", None),
        ("ServiceUnavailable", None),
        ("500", 500),
        ("503", 503),
        ("", 500),
        ("", 502),
        ("", 503),
        ("", 504),
        ("", 429),
        ("", 408),
        (None, 503),
    ],
)
def test_throttling_and_server_errors_are_transient(code: str | None, status: int | None) -> None:
    assert is_transient(client_error(code, status)) is True


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("403", 403),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
        ("ExpiredToken", 400),
        ("NoSuchBucket", 404),
        ("NoSuchKey", 404),
        ("404", 404),
        ("", 404),
        ("ValidationException", 400),
        ("PreconditionFailed", 412),
        (None, None),
    ],
)
def test_permission_and_missing_resource_errors_are_not_transient(code: str | None, status: int | None) -> None:
    assert is_transient(client_error(code, status)) is False


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("refused"),
        ConnectionResetError(104, "reset by peer"),
        ConnectionRefusedError(111, "refused"),
        BrokenPipeError(32, "broken pipe"),
        TimeoutError("timed out"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_connection_errors_and_timeouts_are_transient(exc: BaseException) -> None:
    assert is_transient(exc) is True


def test_our_transient_error_is_transient() -> None:
    assert is_transient(TransientError("the API server is restarting: retry")) is True


class _TransientPush(TransientError):
    """A subclass of TransientError, as a module might define one."""


@pytest.mark.parametrize(
    "exc",
    [
        ConfigurationError("s3://b/k: 403: fix the credentials"),
        SuiteFailed("2 tests failed"),
        PushFailed("denied"),
        BuildFailed("RUN failed"),
        SmokeTestFailed("wrong answer"),
        ClusterError("no deployment"),
        RolloutFailed("timed out; rolled back"),
        PipelineError("something"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_our_permanent_errors_are_not_transient(exc: BaseException) -> None:
    assert is_transient(exc) is False


def test_a_subclass_of_transient_error_is_transient() -> None:
    assert is_transient(_TransientPush("registry busy")) is True


def test_a_configuration_error_caused_by_a_transient_one_is_still_permanent() -> None:
    try:
        try:
            raise client_error("SlowDown", 503)
        except ClientError as cause:
            raise ConfigurationError("wrapped") from cause
    except ConfigurationError as exc:
        assert is_transient(exc) is False


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        KeyError("missing"),
        RuntimeError("boom"),
        NoCredentialsError(),
        OSError(28, "No space left on device"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_other_errors_are_not_transient(exc: BaseException) -> None:
    assert is_transient(exc) is False


class _StatusError(Exception):
    """An exception carrying an HTTP status, as kubernetes' ApiException and many HTTP clients do."""

    def __init__(self, *, status: int | None = None, status_code: int | None = None) -> None:
        super().__init__(f"HTTP {status or status_code}")
        if status is not None:
            self.status = status
        if status_code is not None:
            self.status_code = status_code


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_StatusError(status=503), True),
        (_StatusError(status=500), True),
        (_StatusError(status=429), True),
        (_StatusError(status_code=502), True),
        (_StatusError(status_code=504), True),
        (_StatusError(status=404), False),
        (_StatusError(status=403), False),
        (_StatusError(status=401), False),
        (_StatusError(status_code=400), False),
        (_StatusError(), False),
    ],
    ids=lambda value: repr(value) if isinstance(value, bool) else f"{value}",
)
def test_an_http_status_attribute_decides(exc: BaseException, expected: bool) -> None:
    assert is_transient(exc) is expected


@pytest.mark.parametrize(("status", "expected"), [(503, True), (500, True), (429, True), (404, False), (403, False)])
def test_a_kubernetes_api_exception_is_judged_by_its_status(status: int, expected: bool) -> None:
    assert is_transient(ApiException(status=status, reason="from the API server")) is expected
