"""Every client the tasks use, made in one place: AWS (a named prefect-aws AwsCredentials block, or the standard
AWS chain) and the Docker engine."""

from __future__ import annotations

import contextlib
from typing import Any

import boto3
import docker

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


def docker_client(settings: PipelineSettings) -> contextlib.closing[docker.DockerClient]:
    """The Docker engine (`docker_host` when set, else DOCKER_HOST or the local socket), closed after use."""
    client = docker.DockerClient(base_url=settings.docker_host) if settings.docker_host else docker.from_env()
    return contextlib.closing(client)
