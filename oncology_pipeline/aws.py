"""boto3 sessions and clients from the settings: the standard credential chain or a prefect-aws block."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from oncology_pipeline.settings import PipelineSettings

# One attempt per call: retries belong to the Prefect tasks, so that they show up (and are counted) in the UI.
_CLIENT_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)


def session(settings: PipelineSettings) -> boto3.Session:
    """A boto3 session: from the named AwsCredentials block when set, else the standard AWS chain."""
    if settings.aws_credentials_block:
        from prefect_aws import AwsCredentials

        block = AwsCredentials.load(settings.aws_credentials_block)
        result: boto3.Session = block.get_boto3_session()
        return result
    return boto3.Session(region_name=settings.aws_region)


def client(settings: PipelineSettings, service: str) -> Any:
    """A boto3 client for `service`, pointed at the configured endpoint."""
    endpoint = settings.s3_endpoint_url if service == "s3" else settings.aws_endpoint_url
    boto_session: Any = session(settings)
    return boto_session.client(service, region_name=settings.aws_region, endpoint_url=endpoint, config=_CLIENT_CONFIG)
