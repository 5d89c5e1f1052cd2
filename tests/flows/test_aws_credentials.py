"""AWS credentials from a named prefect-aws AwsCredentials block, as the settings allow."""

from __future__ import annotations

import uuid

from prefect_aws import AwsCredentials
from pydantic import SecretStr

from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client, aws_session


def test_a_named_credentials_block_supplies_the_boto3_session(moto_endpoint: str) -> None:
    name = f"oncology-test-{uuid.uuid4().hex[:8]}"
    AwsCredentials(
        aws_access_key_id="TESTBLOCKACCESSKEY01",
        aws_secret_access_key=SecretStr("block-secret"),
        region_name="eu-west-1",
    ).save(name)
    settings = PipelineSettings(aws_credentials_block=name, s3_endpoint_url=moto_endpoint)
    credentials = aws_session(settings).get_credentials()
    assert credentials is not None and credentials.access_key == "TESTBLOCKACCESSKEY01"
    s3 = aws_client(settings, "s3")
    assert s3.meta.region_name == settings.aws_region  # the pipeline's region wins over the block's
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": settings.aws_region})
    assert name in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert "block-secret" not in repr(settings) and "block-secret" not in repr(AwsCredentials.load(name))
