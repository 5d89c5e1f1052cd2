"""The prediction log: every answered prediction in S3 exactly once, off the request path, bounded in memory."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Prediction
from oncology_model.predictionlog import PredictionLog, case_id, request_id
from oncology_model.service import ServiceSettings, create_app, image_digest
from tests.support.fault_proxy import FaultProxy


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the session's moto server, which boto3 reaches through AWS_ENDPOINT_URL_S3."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    name = f"log-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    return name


def _records(endpoint: str, bucket: str) -> dict[str, list[dict[str, Any]]]:
    """Every record in the bucket, by object key."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    found: dict[str, list[dict[str, Any]]] = {}
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        found[item["Key"]] = [json.loads(line) for line in body.splitlines()]
    return found


@pytest.fixture
def logging_client(model_bundle_dir: Path, bucket: str) -> Iterator[TestClient]:
    settings = ServiceSettings(
        model_dir=model_bundle_dir, log_bucket=bucket, pod_name="pod-a", image_digest="sha256:" + "ab" * 32
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(
    ("set_for", "logged"),
    [("v1", "sha256:" + "cd" * 32), (None, "sha256:" + "cd" * 32), ("v0", None)],
    ids=["set-for-this-model", "set-by-hand", "left-behind-by-an-image-changed-by-hand"],
)
def test_the_image_digest_is_logged_unless_it_was_set_for_another_model(
    model_bundle_dir: Path, set_for: str | None, logged: str | None
) -> None:
    settings = ServiceSettings(
        model_dir=model_bundle_dir, image_digest="sha256:" + "cd" * 32, image_model_version=set_for
    )
    assert image_digest(settings, "v1") == logged


def test_every_prediction_is_logged_once_with_its_request_id(
    logging_client: TestClient, bucket: str, moto_endpoint: str
) -> None:
    client = logging_client
    given = client.post("/v1/predictions", json=EXAMPLE_MALIGNANT, headers={"X-Request-ID": "lab-7:case.1"})
    generated = client.post("/v1/predictions", json=EXAMPLE_BENIGN, headers={"X-Request-ID": "bad id with spaces"})
    batch = client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT]})
    # FastAPI's path (5.0 is an integer score to FastAPI; the fast path hands it on) logs too
    handed_on = client.post("/v1/predictions", json={**EXAMPLE_BENIGN, "mitoses": 1.0})
    refused = client.post("/v1/predictions", json={**EXAMPLE_BENIGN, "mitoses": 11})
    unreadable = client.post(
        "/v1/predictions/batch",
        content=b'"\xff"',
        headers={"content-type": "application/json", "X-Request-ID": "r-2"},
    )
    assert [r.status_code for r in (given, generated, batch, handed_on, refused)] == [200, 200, 200, 200, 422]
    assert unreadable.status_code == 400
    assert given.headers["x-request-id"] == "lab-7:case.1"
    ids = [r.headers["x-request-id"] for r in (generated, batch, handed_on, refused)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 4
    client.__exit__(None, None, None)  # shutdown: the buffer is written

    objects = _records(moto_endpoint, bucket)
    records = [r for rs in objects.values() for r in rs if "refused" not in r]
    refusals = [r for rs in objects.values() for r in rs if "refused" in r]
    cases = [case_id(r["request_id"], r["row"]) for r in records]
    assert sorted(cases) == sorted(["lab-7:case.1", ids[0], f"{ids[1]}/0", f"{ids[1]}/1", ids[2]])
    first = next(r for r in records if r["request_id"] == "lab-7:case.1")
    assert first["features"] == {name: EXAMPLE_MALIGNANT[name] for name in FEATURES}
    assert first["prediction"] == given.json()["prediction"] == "malignant"
    assert first["probability_malignant"] == given.json()["probability_malignant"]
    assert first["model_version"] == given.json()["model_version"]
    assert first["image_digest"] == "sha256:" + "ab" * 32
    # the refused requests: one line each, no body
    assert [{k: v for k, v in r.items() if k != "time"} for r in refusals] == [
        {
            "request_id": request,
            "model_version": first["model_version"],
            "image_digest": first["image_digest"],
            "refused": status,
        }
        for request, status in ((ids[3], 422), ("r-2", 400))
    ]
    now = datetime.now(UTC)
    (key,) = objects
    assert re.fullmatch(rf"predictions/date={now:%Y-%m-%d}/hour=\d\d/pod-a-\d{{8}}T\d{{6}}Z-000001\.jsonl\.gz", key)


def test_metrics_count_logged_and_written_records(logging_client: TestClient) -> None:
    logging_client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN] * 3})
    metrics = logging_client.get("/metrics").text
    assert 'oncology_prediction_log_records_total{outcome="logged"} 3.0' in metrics
    assert "oncology_prediction_log_buffered_records 3.0" in metrics


def test_no_bucket_no_log(model_bundle_dir: Path) -> None:
    with TestClient(create_app(ServiceSettings(model_dir=model_bundle_dir))) as client:
        answer = client.post("/v1/predictions", json=EXAMPLE_BENIGN)
        assert client.app.front.log is None  # type: ignore[attr-defined]
        assert "oncology_prediction_log" not in client.get("/metrics").text
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])


def test_request_ids() -> None:
    assert request_id(b"A1._:-z") == "A1._:-z"
    for bad in (b"", b"-starts-with-dash", b"x" * 129, b"with/slash", "ü".encode()):
        assert request_id(bad) != bad.decode(errors="replace")
    assert request_id(b"x" * 128) == "x" * 128


def _log(s3: Any, bucket: str, **options: Any) -> PredictionLog:
    return PredictionLog(s3, bucket, "predictions", pod="p", model_version="v1", **options)


def _add(log: PredictionLog, name: str, rows: int = 1) -> None:
    log.add(name, [EXAMPLE_BENIGN] * rows, [(Prediction.BENIGN, 0.1)] * rows, batch=rows > 1)


def test_s3_down_then_back_drops_only_beyond_the_cap_and_writes_nothing_twice(
    proxy: FaultProxy, bucket: str, moto_endpoint: str
) -> None:
    s3 = boto3.client("s3", endpoint_url=proxy.url, config=_no_retries())
    log = _log(s3, bucket, flush_records=4, max_records=10, flush_seconds=3600)
    outage = proxy.fail(503, method="PUT", count=3)
    log.start()
    for n in range(4):
        _add(log, f"early-{n}")  # a full batch: the writer takes it, S3 refuses it
    _wait(lambda: outage.hits >= 1)
    for n in range(14):  # 4 in flight + 14 waiting > the cap of 10: the 8 oldest waiting are dropped
        _add(log, f"late-{n}")
    assert log.counts.dropped == 8 and log.counts.buffered == 10
    log.close(timeout=30)  # S3 back after three refusals: everything kept is written once

    written = [r["request_id"] for rs in _records(moto_endpoint, bucket).values() for r in rs]
    assert sorted(written) == sorted([f"early-{n}" for n in range(4)] + [f"late-{n}" for n in range(8, 14)])
    assert log.counts.failed_writes == 3 and log.counts.written == 10 and log.counts.buffered == 0


def test_records_go_to_the_hour_they_were_made_in(bucket: str, moto_endpoint: str) -> None:
    times = iter(
        [datetime(2026, 12, 3, 9, 59, 59, tzinfo=UTC).timestamp()] * 2
        + [datetime(2026, 12, 3, 10, 0, 1, tzinfo=UTC).timestamp()]
    )
    log = _log(boto3.client("s3", endpoint_url=moto_endpoint), bucket, clock=lambda: next(times))
    _add(log, "before")
    _add(log, "after", rows=2)
    log.close()
    objects = _records(moto_endpoint, bucket)
    by_hour = {re.search(r"hour=(\d\d)", key)[1]: [r["request_id"] for r in rs] for key, rs in objects.items()}  # type: ignore[index]
    assert by_hour == {"09": ["before"], "10": ["after", "after"]}


class _Bucket:
    """An S3 client that keeps what is put, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:
        self.objects[Key] = Body

    def cases(self) -> list[str]:
        lines = [json.loads(line) for body in self.objects.values() for line in gzip.decompress(body).splitlines()]
        return [case_id(record["request_id"], record["row"]) for record in lines]


def test_beyond_the_cap_exactly_the_oldest_waiting_rows_are_dropped() -> None:
    s3 = _Bucket()
    log = _log(s3, "b", max_records=5)
    _add(log, "first", rows=4)
    _add(log, "second", rows=3)  # 7 records, a cap of 5: the first two rows go, not the whole first request
    assert (log.counts.logged, log.counts.dropped, log.counts.buffered) == (7, 2, 5)
    log.close()
    assert s3.cases() == ["first/2", "first/3", "second/0", "second/1", "second/2"]
    assert (log.counts.written, log.counts.buffered) == (5, 0)


def test_a_few_records_are_written_on_the_timer() -> None:
    s3 = _Bucket()
    log = _log(s3, "b", flush_seconds=0.05)  # far fewer records than a write, or a slice the request path encodes
    log.start()
    for n in range(3):
        _add(log, f"quiet-{n}")
    _wait(lambda: log.counts.written == 3)
    log.close()
    assert sorted(s3.cases()) == ["quiet-0", "quiet-1", "quiet-2"]


def _no_retries() -> Any:
    from botocore.config import Config

    return Config(retries={"total_max_attempts": 1, "mode": "standard"})


def _wait(condition: Any, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
