"""Flow tests: one Prefect test server for the session, and a fresh set of buckets per test behind a fault proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oncology_pipeline import aws
from oncology_pipeline.settings import PipelineSettings
from standins.aws import create_buckets, seed_training_data
from tests.support.canaries import PrivateIndex, private_index_server
from tests.support.fault_proxy import FaultProxy


@pytest.fixture(autouse=True)
def _on_the_prefect_server(prefect_server: None) -> None:
    """Every flow test runs against the session's Prefect test server."""


def bucket_keys(s3: Any, bucket: str) -> set[str]:
    """Every key in a bucket."""
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


@dataclass(frozen=True)
class Stack:
    """A test's own buckets, seeded with the real data, reached through the fault proxy."""

    settings: PipelineSettings
    overrides: dict[str, Any]
    s3: Any
    proxy: FaultProxy


@pytest.fixture
def stack(proxy: FaultProxy, real_csv: bytes, tmp_path: Path) -> Iterator[Stack]:
    """Fresh buckets per test; the proxy's faults are cleared afterwards."""
    suffix = uuid.uuid4().hex[:10]
    overrides: dict[str, Any] = {
        "s3_endpoint_url": proxy.url,
        "data_bucket": f"data-{suffix}",
        "model_bucket": f"models-{suffix}",
        "metrics_bucket": f"metrics-{suffix}",
        "prediction_log_bucket": f"logs-{suffix}",
        "work_dir": str(tmp_path / "work"),
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


@pytest.fixture
def private_index() -> Iterator[PrivateIndex]:
    """A private package index that records the credentials pip sends it (tests/support/canaries.py)."""
    with private_index_server() as index:
        yield index
