"""Local stand-ins for AWS: a moto server (real HTTP S3/ECR/EKS/STS APIs), its buckets, the real data set."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from oncology_pipeline import s3store
from oncology_pipeline.settings import PipelineSettings


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(port: int | None = None, address: str = "127.0.0.1") -> Iterator[str]:
    """Run a moto server on `address` (loopback; the Docker bridge's gateway when pods must reach it) and yield
    its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = port or free_port()
    server = ThreadedMotoServer(ip_address=address, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{address}:{port}"
    finally:
        server.stop()


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
