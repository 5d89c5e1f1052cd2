"""The pipeline's S3 on a stand-in: its buckets, and the training data where the pipeline reads it."""

from __future__ import annotations

from typing import Any

from oncology_pipeline import s3store
from oncology_pipeline.settings import PipelineSettings


def create_buckets(s3: Any, settings: PipelineSettings) -> list[str]:
    """Create the data, model, metrics and prediction-log buckets (versioned, like production) if missing."""
    names = sorted(
        {settings.data_bucket, settings.model_bucket, settings.metrics_bucket, settings.prediction_log_bucket}
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for name in names:
        if name not in existing:
            config = {"LocationConstraint": settings.aws_region} if settings.aws_region != "us-east-1" else None
            s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": config} if config else {}))
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return names


def seed_training_data(s3: Any, settings: PipelineSettings, data: bytes) -> s3store.S3Object:
    """Upload the training CSV where the pipeline reads it."""
    return s3store.put_bytes(s3, settings.data_bucket, settings.data_key, data, "text/csv")
