"""A test's own buckets, seeded with the real data and reached through the fault proxy, for the flow and fault tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.buckets import create_buckets, seed_training_data
from oncology_pipeline import aws
from oncology_pipeline.settings import PipelineSettings
from tests.support.fault_proxy import FaultProxy


@dataclass(frozen=True)
class Stack:
    """A test's own buckets, seeded with the real data, reached through the fault proxy."""

    settings: PipelineSettings
    overrides: dict[str, Any]
    s3: Any
    proxy: FaultProxy


@contextmanager
def fresh_stack(proxy: FaultProxy, real_csv: bytes, work_dir: Path) -> Iterator[Stack]:
    """New buckets behind `proxy`, seeded with `real_csv`; the proxy's faults are cleared before and after."""
    suffix = uuid.uuid4().hex[:10]
    overrides: dict[str, Any] = {
        "s3_endpoint_url": proxy.url,
        "data_bucket": f"data-{suffix}",
        "model_bucket": f"models-{suffix}",
        "metrics_bucket": f"metrics-{suffix}",
        "prediction_log_bucket": f"logs-{suffix}",
        "work_dir": str(work_dir),
        "bootstrap_resamples": 200,
        # one 5-fold pass for the gate's floors (the default repeats it 5 times): the flows, not the gate's
        # stability, are the subject here (tests/oncology_model/test_candidate.py covers that)
        "gate": {"cv_repeats": 1},
    }
    settings = PipelineSettings(**overrides)
    s3 = aws.client(settings, "s3")
    create_buckets(s3, settings)
    seed_training_data(s3, settings, real_csv)
    proxy.clear()
    yield Stack(settings, overrides, s3, proxy)
    proxy.clear()


def bucket_keys(s3: Any, bucket: str) -> set[str]:
    """Every key in a bucket."""
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def s3_data_uri(stack: Stack) -> str:
    """The S3 URI of the stack's training data."""
    return f"s3://{stack.settings.data_bucket}/{stack.settings.data_key}"
