"""Reading the service's prediction log (written by `oncology_model.predictionlog`) for a time window.

The log is partitioned by hour (`<prefix>/date=YYYY-MM-DD/hour=HH/`), so a window lists only its hours' prefixes.
A record is kept when its time falls in the window (`oncology_pipeline.performance` validates the records and
counts a case logged twice once).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from oncology_pipeline import s3store


@dataclass
class LogWindow:
    """The records of one window, by case id, and what reading them found."""

    start: datetime
    end: datetime
    records: list[dict[str, Any]] = field(default_factory=list)
    objects: int = 0
    unreadable: list[str] = field(default_factory=list)


def hour_prefixes(prefix: str, start: datetime, end: datetime) -> list[str]:
    """The hour partitions `[start, end)` touches, oldest first."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    found = []
    while hour < end:
        found.append(f"{prefix}/date={hour:%Y-%m-%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return found


def record_time(record: dict[str, Any]) -> datetime:
    """A record's time (UTC)."""
    return datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def read_window(s3: Any, bucket: str, prefix: str, start: datetime, end: datetime) -> LogWindow:
    """Every record of `[start, end)`; an object that is not gzip'd JSON lines is named in `unreadable`."""
    window = LogWindow(start, end)
    paginator = s3.get_paginator("list_objects_v2")
    for hour in hour_prefixes(prefix, start, end):
        with s3store.s3_errors(f"s3://{bucket}/{hour}"):
            pages = list(paginator.paginate(Bucket=bucket, Prefix=hour))
        for item in (item for page in pages for item in page.get("Contents", [])):
            body = s3store.get_bytes(s3, bucket, item["Key"])
            window.objects += 1
            try:
                lines = gzip.decompress(body or b"").splitlines()
                records = [json.loads(line) for line in lines if line.strip()]
                times = [record_time(r) for r in records]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                window.unreadable.append(f"s3://{bucket}/{item['Key']}: {exc}")
                continue
            window.records.extend(r for r, when in zip(records, times, strict=True) if start <= when < end)
    return window
