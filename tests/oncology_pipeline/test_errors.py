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
    is_transient_message,
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


# What pip (26, urllib3 2), the Docker engine and registries wrote, most of it captured from the real tools on this
# machine (pip and `docker push` against small servers that refuse, reset, close, answer 503 / 404); each case hits
# as few of the rule's markers as its wording allows, so dropping a marker fails a case.
_PIP = "/work/main/.venv/lib/python3.11/site-packages/pip/_internal"
_PIP_TRACEBACK_OF_A_MISTYPED_INDEX_URL = f"""ERROR: Exception:
Traceback (most recent call last):
  File "{_PIP}/cli/req_command.py", line 551, in trace_basic_info
    locations = search_scope.get_formatted_locations()
  File "{_PIP}/models/search_scope.py", line 74, in get_formatted_locations
    redacted_index_url = redact_auth_from_url(url)
  File "{_PIP}/utils/misc.py", line 563, in redact_auth_from_url
    return _transform_url(url, _redact_netloc)[0]
  File "{_PIP}/utils/misc.py", line 526, in _transform_url
    purl = urllib.parse.urlsplit(url)
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/urllib/parse.py", line 497, in urlsplit
    raise ValueError("Invalid IPv6 URL")
ValueError: Invalid IPv6 URL"""


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection "
            "broken by 'ConnectionResetError(104, 'Connection reset by peer')': /simple/numpy/",
            id="pip-connection-reset",
        ),
        pytest.param(
            'Get "http://127.0.0.1:5000/v2/": read tcp 127.0.0.1:54756->127.0.0.1:5000: read: connection reset by peer',
            id="docker-connection-reset",
        ),
        pytest.param(
            'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused',
            id="docker-connection-refused",
        ),
        pytest.param(
            "pip._vendor.requests.exceptions.ConnectionError: ('Connection aborted.', "
            "RemoteDisconnected('Remote end closed connection without response'))",
            id="requests-connectionerror",
        ),
        pytest.param(
            "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection "
            "broken by 'ReadTimeoutError(\"HTTPSConnectionPool(host='pypi.org', port=443): Read timed out. "
            "(read timeout=15)\")': /simple/numpy/",
            id="pip-read-timed-out",
        ),
        pytest.param(
            'Get "https://registry.example.com/v2/": net/http: TLS handshake timeout', id="tls-handshake-timeout"
        ),
        pytest.param(
            'Head "https://registry.example.com/v2/oncology/blobs/sha256:0f1e": dial tcp 10.0.0.7:443: i/o timeout',
            id="go-io-timeout",
        ),
        pytest.param(
            'Get "https://registry.example.com/v2/": dial tcp 10.0.0.7:443: connect: connection timed out',
            id="go-connection-timed-out",
        ),
        pytest.param(
            "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection "
            "broken by 'NameResolutionError(\"HTTPSConnection(host='pypi.org', port=443): Failed to resolve "
            "'pypi.org' ([Errno -3] Temporary failure in name resolution)\")': /simple/numpy/",
            id="pip-temporary-failure-in-name-resolution",
        ),
        pytest.param(
            'Get "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/": dial tcp: lookup '
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com on 10.255.255.53:53: no such host",
            id="docker-no-such-host",
        ),
        pytest.param(
            "HTTPSConnectionPool(host='files.pythonhosted.org', port=443): Max retries exceeded with url: "
            "/packages/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl (Caused by ProtocolError('Connection "
            "aborted.', RemoteDisconnected('Remote end closed connection without response')))",
            id="urllib3-max-retries-exceeded",
        ),
        pytest.param(
            'Put "http://127.0.0.1:5000/v2/oncology/blobs/uploads/7c1b?_state=x": write tcp '
            "127.0.0.1:51432->127.0.0.1:5000: write: broken pipe",
            id="docker-broken-pipe",
        ),
        pytest.param("toomanyrequests: Rate exceeded", id="ecr-toomanyrequests"),
        pytest.param("received unexpected HTTP status: 429 Too Many Requests", id="docker-429"),
        pytest.param("unavailable: service unavailable", id="registry-unavailable-code"),
        pytest.param(
            "unexpected status from PUT request to https://registry.example.com/v2/oncology/manifests/"
            "20261125T020000Z-3fa85f64: 502 Bad Gateway",
            id="containerd-502",
        ),
        pytest.param(
            "unexpected status from POST request to https://registry.example.com/v2/oncology/blobs/uploads/: "
            "500 Internal Server Error",
            id="containerd-500",
        ),
        pytest.param("received unexpected HTTP status: 503 Service Unavailable", id="docker-503"),
        pytest.param("received unexpected HTTP status: 521 Web Server Is Down", id="docker-5xx-without-known-words"),
        pytest.param(
            "ERROR: HTTP error 503 while getting https://files.pythonhosted.org/packages/numpy-1.26.4-cp311-cp311-"
            "manylinux_2_17_x86_64.whl",
            id="pip-http-error-503",
        ),
        pytest.param(
            "pip._vendor.urllib3.exceptions.ResponseError: too many 503 error responses", id="urllib3-too-many-503"
        ),
        pytest.param('Get "http://127.0.0.1:5000/v2/": EOF', id="docker-eof"),
        pytest.param(
            'Patch "http://127.0.0.1:5000/v2/oncology/blobs/uploads/7c1b?_state=x": unexpected EOF',
            id="docker-unexpected-eof",
        ),
    ],
)
def test_a_tool_message_that_says_the_network_failed_is_transient(message: str) -> None:
    assert is_transient_message(message) is True


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("denied: requested access to the resource is denied", id="push-denied"),
        pytest.param("unauthorized: authentication required", id="push-unauthorized"),
        pytest.param(
            "denied: Your authorization token has expired. Reauthenticate and try again.", id="ecr-token-expired"
        ),
        pytest.param("manifest unknown: manifest unknown", id="manifest-unknown"),
        pytest.param(
            "name unknown: The repository with name 'oncology' does not exist in the registry with id '123456789012'",
            id="ecr-no-repository",
        ),
        pytest.param(
            "tag invalid: The image tag '20261125T020000Z-3fa85f64' already exists in the 'oncology' repository and "
            "cannot be overwritten because the repository is immutable.",
            id="ecr-immutable-tag",
        ),
        pytest.param(
            "error parsing HTTP 404 response body: invalid character 'p' after top-level value: "
            '"404 page not found\\n"',
            id="docker-404",
        ),
        pytest.param('error parsing HTTP 404 response body: unexpected end of JSON input: ""', id="docker-empty-404"),
        pytest.param(
            "unexpected status from HEAD request to http://127.0.0.1:5000/v2/oncology/blobs/sha256:0f1e: 403 Forbidden",
            id="registry-on-port-5000-forbids",
        ),
        pytest.param(
            "ERROR: Could not find a version that satisfies the requirement numpy==9.9.9 (from versions: none)\n"
            "ERROR: No matching distribution found for numpy==9.9.9",
            id="pip-no-matching-distribution",
        ),
        pytest.param(
            "ERROR: Could not install requirement numpy==1.26.4 from https://files.pythonhosted.org/packages/"
            "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl because of HTTP error 404 Client Error: Not Found "
            "for url: https://files.pythonhosted.org/packages/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl",
            id="pip-404",
        ),
        pytest.param(
            "ERROR: Invalid requirement: 'numpy=1.26': Expected semicolon (after name with no version specifier) or "
            "end\n    numpy=1.26\n         ^ (from line 512 of requirements.txt)\n"
            "Hint: = is not a valid operator. Did you mean == ?",
            id="pip-requirement-syntax-error",
        ),
        pytest.param(_PIP_TRACEBACK_OF_A_MISTYPED_INDEX_URL, id="pip-crash-with-line-5xx"),
    ],
)
def test_a_tool_message_that_says_the_request_was_wrong_is_not_transient(message: str) -> None:
    assert is_transient_message(message) is False
