"""The EKS token and connection, with real boto3 against the moto server (EKS `describe_cluster`)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from kubernetes.client import ApiClient
from mypy_boto3_eks import EKSClient

from oncology_pipeline import eks
from oncology_pipeline.eks import TOKEN_PREFIX, connect_eks, eks_token
from oncology_pipeline.errors import ConfigurationError

REGION = "eu-central-1"


@pytest.fixture
def session() -> boto3.Session:
    """A session with the fake credentials of tests/conftest.py."""
    return boto3.Session(region_name=REGION)


@pytest.fixture
def eks_client(moto_endpoint: str, session: boto3.Session) -> EKSClient:
    """A real boto3 EKS client talking to the moto server."""
    return session.client("eks", endpoint_url=moto_endpoint)


@pytest.fixture
def cluster_name(eks_client: EKSClient) -> str:
    """A cluster of this test's own in moto."""
    name = f"oncology-{uuid.uuid4().hex[:8]}"
    eks_client.create_cluster(
        name=name,
        roleArn="arn:aws:iam::123456789012:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-0123456789abcdef0"]},
    )
    return name


def presigned_url(token: str) -> str:
    """The URL inside a token (base64url without padding)."""
    assert token.startswith(TOKEN_PREFIX)
    payload = token[len(TOKEN_PREFIX) :]
    assert "=" not in payload
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


def test_the_token_is_a_presigned_get_caller_identity_url(session: boto3.Session) -> None:
    url = urlsplit(presigned_url(eks_token(session, "prod-cluster")))
    query = {key: values[0] for key, values in parse_qs(url.query).items()}

    assert (url.scheme, url.hostname, url.path) == ("https", f"sts.{REGION}.amazonaws.com", "/")
    assert query["Action"] == "GetCallerIdentity"
    assert query["Version"] == "2011-06-15"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Credential"].startswith("testing/")
    assert query["X-Amz-Credential"].endswith(f"/{REGION}/sts/aws4_request")
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"].split(";")
    assert len(query["X-Amz-Signature"]) == 64


def test_the_cluster_name_is_part_of_the_signature(session: boto3.Session) -> None:
    def signature(cluster: str) -> str:
        return parse_qs(urlsplit(presigned_url(eks_token(session, cluster))).query)["X-Amz-Signature"][0]

    assert signature("cluster-a") != signature("cluster-b")


def test_no_credentials_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigurationError, match="No AWS credentials"):
        eks_token(boto3.Session(region_name=REGION), "prod-cluster")


def test_connect_eks_uses_the_cluster_endpoint_ca_and_a_bearer_token(
    eks_client: EKSClient, session: boto3.Session, cluster_name: str
) -> None:
    described = eks_client.describe_cluster(name=cluster_name)["cluster"]

    api_client: ApiClient = connect_eks(eks_client, session, cluster_name)

    configuration = api_client.configuration
    assert configuration.host == described["endpoint"].rstrip("/")
    assert configuration.host.startswith("https://")
    assert configuration.ssl_ca_cert is not None
    assert Path(configuration.ssl_ca_cert).read_bytes() == base64.b64decode(described["certificateAuthority"]["data"])
    header = configuration.auth_settings()["BearerToken"]
    assert header["in"] == "header" and header["key"] == "authorization"
    value = str(header["value"])
    assert value.startswith(f"Bearer {TOKEN_PREFIX}")
    query = parse_qs(urlsplit(presigned_url(value.removeprefix("Bearer "))).query)
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")


def test_the_token_is_refreshed_after_ten_minutes(
    eks_client: EKSClient, session: boto3.Session, cluster_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    issued: list[str] = []

    def fake_token(session: boto3.Session, cluster: str) -> str:
        issued.append(cluster)
        return f"{TOKEN_PREFIX}token{len(issued)}"

    monkeypatch.setattr(eks, "eks_token", fake_token)
    configuration = connect_eks(eks_client, session, cluster_name, clock=lambda: now[0]).configuration

    assert configuration.get_api_key_with_prefix("BearerToken") == f"Bearer {TOKEN_PREFIX}token1"
    now[0] += 9 * 60
    assert configuration.get_api_key_with_prefix("BearerToken") == f"Bearer {TOKEN_PREFIX}token1"
    now[0] += 61
    assert configuration.get_api_key_with_prefix("BearerToken") == f"Bearer {TOKEN_PREFIX}token2"
    assert issued == [cluster_name, cluster_name]


def test_an_unknown_cluster_is_a_configuration_error(eks_client: EKSClient, session: boto3.Session) -> None:
    with pytest.raises(ConfigurationError, match=f"EKS cluster 'nowhere' does not exist in region {REGION}"):
        connect_eks(eks_client, session, "nowhere")
