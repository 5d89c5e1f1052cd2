"""The demo's closed loop: traffic to the deployed service, the confirmed diagnoses that follow, the monitor flow.

The requests are rows of the data set (with a request id each); their diagnoses are the rows' classes, written as
an outcomes file as a pathology lab would send them; the monitor flow joins them to the prediction log.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from demo import traffic
from oncology_pipeline import aws, layout, predictionlog, s3store
from oncology_pipeline.settings import PipelineSettings

#: Requests the demo sends (rows of the data set without missing values).
REQUESTS = 300


@dataclass(frozen=True)
class Traffic:
    """What the demo sent: request id -> confirmed class (2 or 4)."""

    diagnoses: dict[str, int]
    seconds: float


def demo_sample(count: int) -> list[tuple[traffic.Row, int]]:
    """`count` distinct rows of the data set with their classes, a seeded random sample: the file's order is not
    random (its first rows differ from the rest, which the drift watch would rightly call drift)."""
    rows, classes = traffic.real_rows()
    return [(rows[n], classes[n]) for n in random.Random(0).sample(range(len(rows)), count)]


def send_traffic(url: str, run: str, count: int = REQUESTS) -> Traffic:
    """POST `count` rows of `demo_sample` to the service (8 at a time), each with its own X-Request-ID."""
    sample = demo_sample(count)
    sent = traffic.send(url, [row for row, _ in sample], f"demo-{run}")
    if sent.failures:
        raise RuntimeError(f"{len(sent.failures)} of {len(sent.ids)} requests failed: {sent.failure_counts()}")
    return Traffic(dict(zip(sent.ids, (label for _, label in sample), strict=True)), sent.seconds)


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
    key = layout.outcomes_key(settings.outcomes_prefix, f"demo-{run}")
    return s3store.put_bytes(aws.client(settings, "s3"), settings.data_bucket, key, body.encode(), "text/csv").uri
