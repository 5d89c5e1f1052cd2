"""The Kubernetes API as the deploy stage uses it: connecting, our errors for its refusals, reading Deployments.

Connect with `connect_kubeconfig` (any kubeconfig context: kind, minikube, k3d, EKS via `aws eks
update-kubeconfig`), `connect_in_cluster`, or `oncology_pipeline.eks.connect_eks`; then
`apps = AppsV1Api(api_client)`. One function per verb, the API object first; nothing here knows Prefect.

Every call passes `_request_timeout=<seconds>`; the client makes a number `urllib3.Timeout(total=seconds)`:
connecting may take that long, and each wait for more of the answer what connecting left of it. So an API server
that accepts and never answers fails the call after `seconds` (one that trickles bytes can take longer). urllib3's
default retries would send a GET that timed out three more times (four timeouts in all): `bound_calls` stops that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Self

from kubernetes.client import ApiClient, AppsV1Api, Configuration, V1Deployment
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTClientObject
from kubernetes.config import ConfigException, load_incluster_config, new_client_from_config
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import HTTPError as TransportError
from urllib3.util.retry import Retry

from oncology_pipeline.errors import ClusterError, ConfigurationError, PipelineError, TransientError, is_transient

if TYPE_CHECKING:
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

# --- connections ------------------------------------------------------------------------------------


class _RetryUnlessTimedOut(Retry):
    """urllib3's retries (refused connections, lost keep-alive connections), except that a request that timed out
    is not sent again: it fails at once, so that its `_request_timeout` bounds the call."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        # NewConnectionError (a refused connection) is a ConnectTimeoutError to urllib3: it is still retried.
        if isinstance(error, ReadTimeoutError | ConnectTimeoutError) and not isinstance(error, NewConnectionError):
            raise error.with_traceback(_stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


def bound_calls(api: ApiClient) -> ApiClient:
    """`api` with a timed-out request never sent again, so that each call waits at most its `_request_timeout`
    (every connect function does this: the two here and `eks.connect_eks`)."""
    api.configuration.retries = _RetryUnlessTimedOut(Retry.DEFAULT.total)
    api.rest_client = RESTClientObject(api.configuration)  # the client reads `retries` when it builds its pools
    return api


def connect_kubeconfig(config_file: str | None = None, context: str | None = None) -> ApiClient:
    """An ApiClient for a kubeconfig context (`None`: `$KUBECONFIG` or `~/.kube/config`, its current context)."""
    try:
        client: ApiClient = new_client_from_config(config_file=config_file, context=context)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        where = config_file or "$KUBECONFIG or ~/.kube/config"
        raise ConfigurationError(
            f"Cannot load the Kubernetes configuration from {where} (context: {context or 'current'}): {exc}. "
            "Point KUBECONFIG at a valid file and choose an existing context "
            "(for EKS: aws eks update-kubeconfig --name <cluster>)."
        ) from exc
    return bound_calls(client)


def connect_in_cluster() -> ApiClient:
    """An ApiClient from the pod's service account (when the flow itself runs on the cluster)."""
    configuration = Configuration()
    try:
        load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise ConfigurationError(
            f"Not running in a Kubernetes pod with a service account: {exc}. Use a kubeconfig instead."
        ) from exc
    return bound_calls(ApiClient(configuration))


# --- errors -----------------------------------------------------------------------------------------


def _status_message(exc: ApiException) -> str:
    """The `message` of the Status body, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or "no reason given")


def api_error(exc: ApiException, action: str) -> PipelineError:
    """Translate a refused API call: 401/403 configuration, 429/5xx transient, anything else a cluster error."""
    status = int(exc.status or 0)
    text = f"The Kubernetes API refused to {action}: HTTP {status}: {_status_message(exc)}"
    if status == 401:
        return ConfigurationError(
            f"{text}. The credentials were not accepted: check the kubeconfig user's token or, for EKS, the AWS "
            "identity and the cluster name the token was made for."
        )
    if status == 403:
        return ConfigurationError(
            f"{text}. The identity lacks permission: grant get, list and patch on deployments.apps in the "
            "namespace (RBAC Role/RoleBinding, or an EKS access entry)."
        )
    if is_transient(exc) or status >= 500:
        return TransientError(f"{text}. The API server may recover: retry.")
    return ClusterError(text)


@contextmanager
def calling(action: str) -> Iterator[None]:
    """Translate the client's exceptions into ours for the API call made inside."""
    try:
        yield
    except ApiException as exc:
        raise api_error(exc, action) from exc
    except TransportError as exc:
        raise TransientError(
            f"Cannot reach the Kubernetes API to {action}: {exc}. Check the cluster address and the network."
        ) from exc


# --- reading ----------------------------------------------------------------------------------------


def deployment_name(deployment: V1Deployment) -> str:
    """The Deployment's name (`<unnamed>` when it has none)."""
    return (deployment.metadata.name if deployment.metadata else None) or "<unnamed>"


def read_deployment(apps: AppsV1Api, namespace: str, name: str, *, request_timeout: float) -> V1Deployment:
    """One Deployment by name."""
    with calling(f"read deployment {name!r} in namespace {namespace!r}"):
        deployment: V1Deployment = apps.read_namespaced_deployment(name, namespace, _request_timeout=request_timeout)
    return deployment


def list_deployments(apps: AppsV1Api, namespace: str, selector: str, *, request_timeout: float) -> list[V1Deployment]:
    """The Deployments in `namespace` matching the label `selector`, by name."""
    with calling(f"list deployments in namespace {namespace!r} with selector {selector!r}"):
        listed = apps.list_namespaced_deployment(namespace, label_selector=selector, _request_timeout=request_timeout)
    return sorted(listed.items, key=deployment_name)
