"""The prediction log: every answered prediction as one JSON line, written to S3 off the request path.

The request path encodes its records as JSON lines (msgspec, microseconds) and appends them to an in-memory buffer
(a deque append under a lock). A background thread takes the buffer every `flush_seconds`, or as soon as it holds
`flush_records` records, and writes one gzip'd JSON-lines object per hour of prediction time to

    s3://<bucket>/<prefix>/date=YYYY-MM-DD/hour=HH/<pod>-<start>-<seq>.jsonl.gz

A failed write is retried with back-off under the same key (a retry that reaches S3 twice writes the same object
again, never a second copy). The buffer is capped: beyond `max_records` the oldest entries are dropped and
counted. `close()` (the server's shutdown, i.e. SIGTERM) writes what is left within a deadline.

The writer thread only joins bytes, compresses them and sends them (zlib and the socket release the GIL), so it
does not hold up the event loop: encoding there would stall requests for tens of milliseconds at each flush.

One record: request_id, row (None for a single prediction, the index within a batch), time (UTC), model_version,
image_digest, the nine features, prediction, probability_malignant. A case is `request_id`, or
`request_id/row` for a batch row: the id confirmed diagnoses are joined on.
"""

from __future__ import annotations

import gzip
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from oncology_model.datamodel import Prediction

#: A request id the service takes from the client's `X-Request-ID`; any other value gets a generated id.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: A case id: a request id, or `<request id>/<row>` for a row of a batch request.
CASE_ID = re.compile(rf"{REQUEST_ID.pattern}(?:/(?:0|[1-9][0-9]{{0,8}}))?")

log = logging.getLogger(__name__)

Result = tuple[Prediction, float]


class _Record(msgspec.Struct, gc=False):
    """One line of the log (`features`: any object of the nine scores that msgspec encodes, e.g. the fast path's
    decoded struct, or a dict)."""

    request_id: str
    row: int | None
    time: str
    model_version: str
    image_digest: str | None
    features: Any
    prediction: Prediction
    probability_malignant: float


def request_id(header: bytes | None) -> str:
    """The client's `X-Request-ID` when it is a valid id, else a new one (32 hex digits)."""
    if header is not None:
        try:
            text = header.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if REQUEST_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


def case_id(request: str, row: int | None) -> str:
    """The id an outcome names: the request id, or `<request id>/<row>` for a row of a batch."""
    return request if row is None else f"{request}/{row}"


def log_key(prefix: str, pod: str, start: str, seq: int, hour: datetime) -> str:
    """`<prefix>/date=YYYY-MM-DD/hour=HH/<pod>-<start>-<seq>.jsonl.gz`: one written batch of one hour."""
    return f"{prefix}/date={hour:%Y-%m-%d}/hour={hour:%H}/{pod}-{start}-{seq:06d}.jsonl.gz"


class _Entry(NamedTuple):
    """One answered request's records, encoded: the hour they belong to, the JSON lines, how many."""

    hour: int  # seconds since the epoch, at the start of the hour
    lines: bytes
    records: int


@dataclass
class LogCounts:
    """What the log did, for `/metrics` (records unless named otherwise)."""

    logged: int = 0
    written: int = 0
    dropped: int = 0
    failed_writes: int = 0
    buffered: int = 0


class PredictionLog:
    """The buffer and its writer thread (start it with `start()`, stop it with `close()`)."""

    def __init__(
        self,
        s3: Any,  # a boto3 S3 client: only put_object is used
        bucket: str,
        prefix: str,
        pod: str,
        model_version: str,
        image_digest: str | None = None,
        flush_seconds: float = 30,
        flush_records: int = 10_000,
        max_records: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.pod = pod
        self.start_stamp = datetime.fromtimestamp(clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        self.model_version = model_version
        self.image_digest = image_digest
        self.flush_seconds = flush_seconds
        self.flush_records = flush_records
        self.max_records = max_records
        self.counts = LogCounts()
        self._clock = clock
        self._entries: deque[_Entry] = deque()
        self._lock = threading.Lock()
        self._full = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._encode_lines = msgspec.json.Encoder().encode_lines
        self._second = -1
        self._second_text = ""

    # The request path -------------------------------------------------------------------------------------------

    def add(self, request: str, features: Sequence[Any], results: Sequence[Result], batch: bool) -> None:
        """Buffer one answered request's records (never blocks on S3); `features`: one object of the nine scores
        per row (a dict, or a msgspec struct with those fields)."""
        now = self._clock()
        second = int(now)
        if second != self._second:  # the date and time to the second, formatted once a second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        stamp = f"{self._second_text}.{int((now - second) * 1e6):06d}Z"
        version, digest = self.model_version, self.image_digest
        if batch:
            records = [
                _Record(request, row, stamp, version, digest, scores, label, probability)
                for row, (scores, (label, probability)) in enumerate(zip(features, results, strict=True))
            ]
        else:
            ((label, probability),) = results
            records = [_Record(request, None, stamp, version, digest, features[0], label, probability)]
        entry = _Entry(second - second % 3600, self._encode_lines(records), len(records))
        with self._lock:
            self._entries.append(entry)
            counts = self.counts
            counts.logged += entry.records
            counts.buffered += entry.records
            while counts.buffered > self.max_records and self._entries:
                dropped = self._entries.popleft().records
                counts.buffered -= dropped
                counts.dropped += dropped
            full = counts.buffered >= self.flush_records
        if full:
            self._full.set()

    # The writer thread -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def close(self, timeout: float = 20) -> None:
        """Write what is buffered (retrying until `timeout` has passed), then stop the writer thread."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._full.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 1)
        else:  # never started: write from here
            self._flush(everything=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._full.wait(self.flush_seconds)
            self._full.clear()
            self._flush(everything=self._stop.is_set())
        self._flush(everything=True)

    def _take(self) -> list[_Entry]:
        """Up to `flush_records` records' entries, oldest first (they stay counted as buffered until written)."""
        taken: list[_Entry] = []
        size = 0
        with self._lock:
            while self._entries and (size == 0 or size + self._entries[0].records <= self.flush_records):
                entry = self._entries.popleft()
                taken.append(entry)
                size += entry.records
        return taken

    def _flush(self, everything: bool) -> None:
        """Write the buffer in batches of up to `flush_records`: the entries there now, or (`everything`) until it
        is empty. A batch S3 refuses is retried until it is written or the close deadline passes (then it is
        counted as dropped)."""
        with self._lock:
            waiting = len(self._entries)
        while (everything or waiting > 0) and (entries := self._take()):
            waiting -= len(entries)
            for hour, lines, records in self._by_hour(entries):
                self._seq += 1
                key = log_key(self.prefix, self.pod, self.start_stamp, self._seq, hour)
                body = gzip.compress(lines, compresslevel=1)  # the fastest: JSON lines still shrink ~8x
                written = self._put(key, body)
                with self._lock:
                    self.counts.buffered -= records
                    if written:
                        self.counts.written += records
                    else:
                        self.counts.dropped += records

    def _put(self, key: str, body: bytes) -> bool:
        """PUT one object, with back-off (0.5 s doubling to 30 s) until it succeeds or the close deadline passes."""
        delay = 0.5
        while True:
            try:
                self.s3.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson", ContentEncoding="gzip"
                )
                return True
            except Exception as exc:  # any S3 or network error: the request path must never see it
                with self._lock:
                    self.counts.failed_writes += 1
                log.warning("prediction log: writing s3://%s/%s failed (%s)", self.bucket, key, exc)
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                log.error("prediction log: s3://%s/%s not written before shutdown", self.bucket, key)
                return False
            if self._stop.is_set():
                time.sleep(min(delay, remaining))
            else:  # a shutdown wakes it for one more try at once
                self._stop.wait(min(delay, remaining))
            delay = min(delay * 2, 30)

    @staticmethod
    def _by_hour(entries: list[_Entry]) -> list[tuple[datetime, bytes, int]]:
        """The entries' lines, one group per hour of prediction time: (hour, lines, record count)."""
        groups: dict[int, list[_Entry]] = {}
        for entry in entries:
            groups.setdefault(entry.hour, []).append(entry)
        return [
            (datetime.fromtimestamp(hour, UTC), b"".join(e.lines for e in group), sum(e.records for e in group))
            for hour, group in sorted(groups.items())
        ]
