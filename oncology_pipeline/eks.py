"""EKS: the bearer token `aws eks get-token` makes, and a Kubernetes ApiClient for an EKS cluster.

boto3 has no `get-token` (boto/boto3#2309): the token is a presigned STS `GetCallerIdentity` URL carrying the
header `x-k8s-aws-id: <cluster>` among its signed headers, base64url-encoded behind `k8s-aws-v1.`. EKS
accepts it for 15 minutes, so the client refreshes it well before that (kubernetes-client/python#741).
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from botocore.signers import RequestSigner
from kubernetes.client import ApiClient, Configuration

from oncology_pipeline.errors import ClusterError, ConfigurationError, TransientError, is_transient
from oncology_pipeline.kubeapi import bound_calls

if TYPE_CHECKING:
    from boto3.session import Session
    from mypy_boto3_eks import EKSClient

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
URL_EXPIRES_SECONDS = 60
TOKEN_REFRESH_SECONDS = 10 * 60  # refresh well before EKS stops accepting it (15 min; the CLI says 14)


def eks_token(session: Session, cluster_name: str, *, sts_endpoint_url: str | None = None) -> str:
    """A bearer token for `cluster_name`, as `aws eks get-token --cluster-name <cluster_name>` prints it.

    Signing needs the session's credentials, so this takes a boto3 Session (not a client).
    """
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigurationError("No AWS credentials found to sign the EKS token: configure a profile or role.")
    sts = session.client("sts", endpoint_url=sts_endpoint_url)
    region = sts.meta.region_name
    if not region:
        raise ConfigurationError("No AWS region set for the EKS token: set AWS_REGION or the profile's region.")
    signer = RequestSigner(sts.meta.service_model.service_id, region, "sts", "v4", credentials, session.events)
    request = {
        "method": "GET",
        "url": f"{sts.meta.endpoint_url.rstrip('/')}/?Action=GetCallerIdentity&Version=2011-06-15",
        "body": {},
        "headers": {CLUSTER_ID_HEADER: cluster_name},
        "context": {},
    }
    url = signer.generate_presigned_url(request, region_name=region, expires_in=URL_EXPIRES_SECONDS, operation_name="")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class TokenRefresher:
    """A `Configuration.refresh_api_key_hook`: puts a fresh EKS token in place when the current one ages."""

    def __init__(
        self,
        session: Session,
        cluster_name: str,
        *,
        refresh_after: float = TOKEN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._cluster_name = cluster_name
        self._refresh_after = refresh_after
        self._clock = clock
        self._issued_at: float | None = None

    def __call__(self, configuration: Configuration) -> None:
        """Called by the client before every request."""
        now = self._clock()
        if self._issued_at is None or now - self._issued_at >= self._refresh_after:
            configuration.api_key["BearerToken"] = eks_token(self._session, self._cluster_name)
            configuration.api_key_prefix["BearerToken"] = "Bearer"
            self._issued_at = now


def _write_ca(data: str, cluster_name: str) -> str:
    """Write the cluster's CA bundle (base64 in `describe_cluster`) to a file removed at exit."""
    try:
        pem = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ClusterError(
            f"EKS cluster {cluster_name!r} returned a certificate authority that is not base64."
        ) from exc
    handle, path = tempfile.mkstemp(prefix=f"eks-{cluster_name}-ca-", suffix=".crt")
    with os.fdopen(handle, "wb") as file:
        file.write(pem)
    atexit.register(_remove, path)
    return path


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def connect_eks(
    eks_client: EKSClient,
    session: Session,
    cluster_name: str,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ApiClient:
    """An ApiClient for an EKS cluster: its endpoint and CA from `describe_cluster`, a self-refreshing token."""
    try:
        cluster = eks_client.describe_cluster(name=cluster_name)["cluster"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", str(exc))
        if is_transient(exc):
            raise TransientError(f"EKS describe_cluster({cluster_name!r}) failed: {code}: {message}") from exc
        if code == "ResourceNotFoundException":
            raise ConfigurationError(
                f"EKS cluster {cluster_name!r} does not exist in region {eks_client.meta.region_name}: "
                "check the cluster name and the AWS region."
            ) from exc
        raise ConfigurationError(
            f"EKS describe_cluster({cluster_name!r}) failed: {code}: {message}. Check the AWS credentials and "
            "the eks:DescribeCluster permission."
        ) from exc
    except BotoCoreError as exc:
        if is_transient(exc):
            raise TransientError(f"Cannot reach EKS to describe cluster {cluster_name!r}: {exc}") from exc
        raise ConfigurationError(f"Cannot describe EKS cluster {cluster_name!r}: {exc}") from exc
    state = cluster.get("status")
    if state not in (None, "ACTIVE", "UPDATING"):
        raise ClusterError(f"EKS cluster {cluster_name!r} is {state}, not ACTIVE: wait for it or pick another.")
    endpoint = cluster.get("endpoint")
    ca_data = cluster.get("certificateAuthority", {}).get("data")
    if not endpoint or not ca_data:
        raise ClusterError(f"EKS cluster {cluster_name!r} has no endpoint or certificate authority yet.")

    configuration = Configuration(host=endpoint.rstrip("/"))
    configuration.ssl_ca_cert = _write_ca(ca_data, cluster_name)
    refresher = TokenRefresher(session, cluster_name, clock=clock)
    refresher(configuration)
    configuration.refresh_api_key_hook = refresher  # type: ignore[assignment]  # the client types it as None
    return bound_calls(ApiClient(configuration))
