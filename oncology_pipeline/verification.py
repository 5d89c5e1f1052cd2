"""Verify a rollout from the outside: ask the Service, through the API server's Service proxy, which model it
serves, and have it answer the bundle's golden set. The same calls work on EKS and on the local stand-in.

The golden set goes with an `X-Request-ID` of `verify-<model version>-<8 hex digits>`: the service logs those
predictions like any others, and the monitor sets them apart from real traffic by that id
(`oncology_pipeline.predictionlog.is_verification`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from oncology_pipeline.errors import VerificationFailed
from oncology_pipeline.predictionlog import VERIFICATION_PREFIX

TOLERANCE = 1e-9
_PROXY_PATH = "/api/v1/namespaces/{namespace}/services/{name}/proxy/{path}"
_REQUEST_ID_HEADER = "X-Request-ID"


class _Answer(NamedTuple):
    """A decoded JSON answer and the `X-Request-ID` it carried."""

    body: Any
    request_id: str | None


def verification_request_id(version: str) -> str:
    """A new request id for verifying `version`: `verify-<version>-<8 hex digits>`."""
    return f"{VERIFICATION_PREFIX}{version}-{secrets.token_hex(4)}"


def _proxy(
    api: ApiClient,
    method: str,
    namespace: str,
    service: str,
    path: str,
    body: Any,
    request_timeout: float,
    request_id: str | None,
) -> _Answer:
    """One request to `service` (`name:port`) through the API server's proxy, waiting at most `request_timeout` for
    the API server (see `oncology_pipeline.kubeapi`), with `request_id` as `X-Request-ID` when given."""
    what = f"{method} {path} through the proxy of service {service}"
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if request_id is not None:
        headers[_REQUEST_ID_HEADER] = request_id
    request = api.param_serialize(
        method=method,
        resource_path=_PROXY_PATH,
        path_params={"namespace": namespace, "name": service, "path": path},
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(*request, _request_timeout=request_timeout)
        response.read()  # type: ignore[no-untyped-call]
    except ApiException as exc:
        raise VerificationFailed(f"{what} answered HTTP {exc.status}: {(exc.body or exc.reason or '')!s:.300}") from exc
    except TransportError as exc:
        raise VerificationFailed(f"{what} failed: {exc}") from exc
    if response.status >= 400:
        raise VerificationFailed(f"{what} answered HTTP {response.status}: {(response.data or b'')[:300]!r}")
    return _Answer(json.loads(response.data or b"null"), response.headers.get(_REQUEST_ID_HEADER))


def verify_service(
    api: ApiClient,
    namespace: str,
    service: str,
    version: str,
    golden: Sequence[tuple[dict[str, int], float]],
    *,
    replicas: int = 1,
    attempts: int = 3,
    request_timeout: float,
) -> str:
    """Check that every answer comes from model `version` and that the golden set's probabilities match to 1e-9.

    `/v1/model` is asked as `served_versions` asks. The golden set is sent as one batch with a verification request id
    (`verification_request_id`), which the answer must carry back. A 5xx from the proxy (a pod going away) or no
    answer within `request_timeout` is asked again up to `attempts` times, with the same request id.
    """
    seen = served_versions(
        api, namespace, service, replicas=replicas, attempts=attempts, request_timeout=request_timeout
    )
    if seen != {version}:
        raise VerificationFailed(f"service {service} serves model {', '.join(sorted(seen))}, expected {version}")
    if not golden:
        return f"service {service} serves model {version}; the bundle holds no golden set"
    tumors = {"tumors": [t for t, _ in golden]}
    request_id = verification_request_id(version)
    answer = _ask(
        api, "POST", namespace, service, "v1/predictions/batch", tumors, attempts, request_timeout, request_id
    )
    if answer.request_id != request_id:
        raise VerificationFailed(
            f"service {service} answered the golden set with X-Request-ID {answer.request_id!r}, not {request_id!r}: "
            "the prediction log may hold these requests as real traffic"
        )
    predictions = answer.body.get("predictions") or []
    if len(predictions) != len(golden):
        raise VerificationFailed(f"service {service} answered {len(predictions)} of {len(golden)} golden cases")
    worst, row = 0.0, -1
    for index, ((_, expected), got) in enumerate(zip(golden, predictions, strict=True)):
        if got.get("model_version") != version:
            raise VerificationFailed(f"golden case {index} answered by model {got.get('model_version')}, not {version}")
        difference = abs(float(got["probability_malignant"]) - expected)
        if difference > worst:
            worst, row = difference, index
    if worst > TOLERANCE:
        raise VerificationFailed(
            f"golden case {row}: probability differs from the bundle's by {worst:.3g} (> {TOLERANCE:g}): the "
            "image does not compute what was tested"
        )
    return f"service {service} serves model {version}; {len(golden)} golden cases match (max difference {worst:.1e})"


def served_versions(
    api: ApiClient, namespace: str, service: str, *, replicas: int = 1, attempts: int = 3, request_timeout: float
) -> set[str]:
    """The model versions `service` answers `GET /v1/model` with, asked twice per replica (so each pod behind it is
    likely asked once); VerificationFailed when it does not answer."""
    return {
        str(_ask(api, "GET", namespace, service, "v1/model", None, attempts, request_timeout).body.get("model_version"))
        for _ in range(max(2, 2 * replicas))
    }


def _ask(
    api: ApiClient,
    method: str,
    namespace: str,
    service: str,
    path: str,
    body: Any,
    attempts: int,
    request_timeout: float,
    request_id: str | None = None,
) -> _Answer:
    for attempt in range(attempts):
        try:
            return _proxy(api, method, namespace, service, path, body, request_timeout, request_id)
        except VerificationFailed:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover
