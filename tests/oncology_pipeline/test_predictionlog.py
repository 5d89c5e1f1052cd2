"""Reading the prediction log for a window: only its hour partitions, only its records, bad objects named."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta

import boto3

from oncology_pipeline.predictionlog import read_window, window_keys

START = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
END = START + timedelta(hours=2)  # partitions 2026-12-02 23h, 2026-12-03 00h and 01h


def _object(hour: datetime, name: str, times: list[datetime]) -> tuple[str, bytes]:
    key = f"predictions/date={hour:%Y-%m-%d}/hour={hour:%H}/{name}.jsonl.gz"
    lines = [
        json.dumps({"request_id": f"{name}-{n}", "time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        for n, t in enumerate(times)
    ]
    return key, gzip.compress("\n".join(lines).encode())


def test_a_window_reads_its_hours_and_keeps_its_records(moto_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"log-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    h23, h00, h01, h02 = (datetime(2026, 12, 2, 23, tzinfo=UTC) + timedelta(hours=n) for n in range(4))
    objects = [
        _object(h23 - timedelta(days=1), "day-before", [h23 - timedelta(days=1)]),
        _object(h23, "edge", [h23 + timedelta(minutes=10), h23 + timedelta(minutes=45)]),  # 23:10 is before START
        _object(h00, "inside", [h00 + timedelta(minutes=5)]),
        _object(h01, "late", [h01 + timedelta(minutes=29), h01 + timedelta(minutes=31)]),  # 01:31 is at/after END
        _object(h02, "after", [h02]),
    ]
    for key, body in objects:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key=f"predictions/date={h00:%Y-%m-%d}/hour=00/broken.jsonl.gz", Body=b"not gzip")

    keys = window_keys(s3, bucket, "predictions", START, END)
    assert [k.rsplit("/", 1)[1] for k in keys] == [
        "edge.jsonl.gz",
        "broken.jsonl.gz",
        "inside.jsonl.gz",
        "late.jsonl.gz",
    ]
    window = read_window(s3, bucket, "predictions", START, END)
    assert sorted(r["request_id"] for r in window.records) == ["edge-1", "inside-0", "late-0"]
    assert window.objects == 4 and len(window.unreadable) == 1 and "broken.jsonl.gz" in window.unreadable[0]
