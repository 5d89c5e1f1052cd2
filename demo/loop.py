"""The demo's closed loop: traffic to the deployed service, the confirmed diagnoses that follow, the monitor flow.

The requests are rows of the data set (with a request id each); their diagnoses are the rows' classes, written as
an outcomes file as a pathology lab would send them; the monitor flow joins them to the prediction log.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from oncology_model.data import parse_csv
from oncology_model.datamodel import FEATURES
from oncology_model.sample_data import sample_data_csv
from oncology_pipeline import aws, predictionlog, s3store
from oncology_pipeline.settings import PipelineSettings

#: Requests the demo sends (rows of the data set without missing values).
REQUESTS = 300


@dataclass(frozen=True)
class Traffic:
    """What the demo sent: request id -> confirmed class (2 or 4)."""

    diagnoses: dict[str, int]
    seconds: float


def send_traffic(url: str, run: str, count: int = REQUESTS) -> Traffic:
    """POST `count` rows of the data set to the service (8 at a time), each with its own X-Request-ID."""
    data = parse_csv(sample_data_csv())
    complete = ~np.isnan(data.X).any(axis=1)
    rows, labels = data.X[complete][:count], data.y[complete][:count]
    start = time.perf_counter()

    def post(n: int) -> tuple[str, int]:
        request_id = f"demo-{run}-{n:04d}"
        body = json.dumps(dict(zip(FEATURES, map(int, rows[n]), strict=True))).encode()
        request = urllib.request.Request(
            f"{url}/v1/predictions",
            data=body,
            headers={"content-type": "application/json", "x-request-id": request_id},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.headers["x-request-id"] == request_id
        return request_id, 4 if labels[n] else 2

    with ThreadPoolExecutor(8) as pool:
        diagnoses = dict(pool.map(post, range(len(rows))))
    return Traffic(diagnoses, time.perf_counter() - start)


def wait_for_log(settings: PipelineSettings, ids: set[str], timeout: float = 30) -> int:
    """Poll the prediction log until every id is in it (or `timeout` passes); how many are."""
    s3 = aws.client(settings, "s3")
    now = datetime.now(UTC)
    deadline = time.monotonic() + timeout
    while True:
        window = predictionlog.read_window(
            s3,
            settings.prediction_log_bucket,
            settings.prediction_log_prefix,
            now - timedelta(hours=1),
            datetime.now(UTC),
        )
        found = ids & {r["request_id"] for r in window.records}
        if found == ids or time.monotonic() > deadline:
            return len(found)
        time.sleep(1)


def write_outcomes(settings: PipelineSettings, run: str, diagnoses: dict[str, int]) -> str:
    """The confirmed diagnoses as an outcomes file (request_id, diagnosis, confirmed_at); its URI."""
    confirmed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = "request_id,diagnosis,confirmed_at\n" + "".join(f"{i},{d},{confirmed}\n" for i, d in diagnoses.items())
    key = f"{settings.outcomes_prefix}/demo-{run}.csv"
    return s3store.put_bytes(aws.client(settings, "s3"), settings.data_bucket, key, body.encode(), "text/csv").uri
