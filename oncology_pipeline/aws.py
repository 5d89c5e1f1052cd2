"""boto3 clients from the settings, pointed at the configured endpoints."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from oncology_pipeline.settings import PipelineSettings

# One attempt per call: retries belong to the Prefect tasks, so that they show up (and are counted) in the UI.
_CLIENT_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60)


def client(settings: PipelineSettings, service: str, session: boto3.Session | None = None) -> Any:
    """A boto3 client for `service` from `session` (default: the standard AWS credential chain)."""
    endpoint = settings.s3_endpoint_url if service == "s3" else settings.aws_endpoint_url
    boto_session: Any = session or boto3.Session(region_name=settings.aws_region)
    return boto_session.client(service, region_name=settings.aws_region, endpoint_url=endpoint, config=_CLIENT_CONFIG)
