"""AWS sessions for the tasks: a named prefect-aws AwsCredentials block, or the standard AWS chain."""

from __future__ import annotations

from typing import Any

import boto3

from oncology_pipeline import aws
from oncology_pipeline.settings import PipelineSettings


def aws_session(settings: PipelineSettings) -> boto3.Session:
    """The block's session when `aws_credentials_block` names one, else the standard chain."""
    if settings.aws_credentials_block:
        from prefect_aws import AwsCredentials

        session: boto3.Session = AwsCredentials.load(settings.aws_credentials_block).get_boto3_session()
        return session
    return boto3.Session(region_name=settings.aws_region)


def aws_client(settings: PipelineSettings, service: str) -> Any:
    """A boto3 client for `service` with the configured credentials and endpoint."""
    return aws.client(settings, service, aws_session(settings))
