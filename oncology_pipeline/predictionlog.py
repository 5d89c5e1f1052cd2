"""Reading the service's prediction log (written by `oncology_model.predictionlog`) for a time window.

The log is partitioned by hour (`<prefix>/date=YYYY-MM-DD/hour=HH/`), so a window lists only its hours' prefixes.
A record is kept when its time falls in the window (`oncology_pipeline.performance` validates the records and
counts a case logged twice once).

The deploy verification's requests are logged too: their request ids start with `VERIFICATION_PREFIX`, and the
monitor sets their records apart from real traffic (`is_verification`).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from oncology_pipeline import layout, s3store

#: How the deploy verification's request ids begin (`verify-<model version>-<8 hex digits>`); reserved for it: a
#: client's request with such an X-Request-ID would be set apart as well.
VERIFICATION_PREFIX = "verify-"


def is_verification(case: str) -> bool:
    """True for a request or case id of the deploy verification (`verify-...`, `verify-.../<row>`)."""
    return case.startswith(VERIFICATION_PREFIX)


@dataclass
class LogWindow:
    """The records of one window, and what reading them found."""

    start: datetime
    end: datetime
    records: list[dict[str, Any]] = field(default_factory=list)
    objects: int = 0
    unreadable: list[str] = field(default_factory=list)


def _partition_hour(key: str, prefix: str) -> datetime | None:
    """The hour of a log object's partition (`<prefix>/date=YYYY-MM-DD/hour=HH/...`); None for another key."""
    parts = key.removeprefix(f"{prefix}/").split("/")
    try:
        return datetime.strptime(f"{parts[0]} {parts[1]}", "date=%Y-%m-%d hour=%H").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None


def window_keys(s3: Any, bucket: str, prefix: str, start: datetime, end: datetime) -> list[str]:
    """The log objects of the hour partitions `[start, end)` touches: one listing from the start's date on
    (partition keys sort by time), whatever the window's length."""
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    after = f"{prefix}/date={first:%Y-%m-%d}"  # sorts before that date's keys
    return [
        o.key
        for o in s3store.list_objects(s3, bucket, prefix, start_after=after)
        if (hour := _partition_hour(o.key, prefix)) is not None and first <= hour < end
    ]


def record_time(record: dict[str, Any]) -> datetime:
    """A record's time (UTC)."""
    return datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def read_window(s3: Any, bucket: str, prefix: str, start: datetime, end: datetime) -> LogWindow:
    """Every record of `[start, end)`; an object that is not gzip'd JSON lines is named in `unreadable`."""
    window = LogWindow(start, end)
    for key in window_keys(s3, bucket, prefix, start, end):
        body = s3store.get_bytes(s3, bucket, key)
        window.objects += 1
        try:
            lines = gzip.decompress(body or b"").splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
            times = [record_time(r) for r in records]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            window.unreadable.append(f"{layout.uri(bucket, key)}: {exc}")
            continue
        window.records.extend(r for r, when in zip(records, times, strict=True) if start <= when < end)
    return window
