"""The prediction log: every answered prediction as one JSON line, written to S3 off the request path.

The request path notes what it answered (the time, the request id, the decoded scores and the results it already
holds: one tuple under a lock), and encodes what it noted as JSON lines (msgspec) once per slice of
`ENCODE_SLICE` records, in one pass and one chunk of lines per hour. A background thread takes the chunks every
`flush_seconds`, or as soon as `flush_records` records wait, and writes one gzip'd JSON-lines object per hour of
prediction time to

    s3://<bucket>/<prefix>/date=YYYY-MM-DD/hour=HH/<pod>-<start>-<seq>.jsonl.gz

A failed write is retried with back-off under the same key (a retry that reaches S3 twice writes the same object
again, never a second copy). The buffer is capped: beyond `max_records` the oldest waiting records are dropped
and counted. `close()` (the server's shutdown, i.e. SIGTERM) writes what is left within a deadline.

Why slices: between two requests the code and data that encoding a record touches have left the CPU's caches, and
in the server under load a record encoded in its own request cost about twice what it costs in a pass over a slice
(about 1.2 µs of CPU). Why on the event loop's thread: uvloop runs its loop without the GIL and takes it back for
each callback, so a writer thread with Python work to do gets it at each of those moments and keeps it until it
blocks or the interpreter's switch interval (5 ms) runs out, while the loop waits. So the writer does only what
releases the GIL (compressing, sending) and little Python around it. It compresses with ISA-L's igzip (gzip's
format at about five times zlib's speed at level 1, and a smaller file): 10,000 records, about 5 MB of lines, in
about 4 ms of CPU instead of 19.

One record: request_id, row (None for a single prediction, the index within a batch), time (UTC), model_version,
image_digest, the nine features, prediction, probability_malignant. A case is `request_id`, or
`request_id/row` for a batch row: the id confirmed diagnoses are joined on. A request refused as invalid is one
record without its body: request_id, time, model_version, image_digest, refused (the HTTP status).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import msgspec
from isal import igzip

from oncology_model.datamodel import Prediction

#: A request id the service takes from the client's `X-Request-ID`; any other value gets a generated id.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: A case id: a request id, or `<request id>/<row>` for a row of a batch request.
CASE_ID = re.compile(rf"{REQUEST_ID.pattern}(?:/(?:0|[1-9][0-9]{{0,8}}))?")
#: The request path encodes what it noted once this many records wait unencoded (or `flush_records`, if fewer): a
#: pass of about 0.3 ms.
ENCODE_SLICE = 256

log = logging.getLogger(__name__)

Result = tuple[Prediction, float]
#: One answered request as `add` notes it: time (seconds since the epoch), request id, features, results, batch;
#: a refusal as `refuse` notes it has no results and its HTTP status as its one feature.
_Answer = tuple[float, str, Sequence[Any], Sequence[Result], bool]


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


class _Refusal(msgspec.Struct, gc=False):
    """The line of a request refused as invalid: no body, no answer."""

    request_id: str
    time: str
    model_version: str
    image_digest: str | None
    refused: int


def request_id(header: bytes | None) -> str:
    """The client's `X-Request-ID` when it is a valid id, else a new one: 128 random bits as 32 hex digits (as
    random as a UUID4, at a quarter of its cost)."""
    if header is not None:
        try:
            text = header.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if REQUEST_ID.fullmatch(text):
            return text
    return os.urandom(16).hex()


def case_id(request: str, row: int | None) -> str:
    """The id an outcome names: the request id, or `<request id>/<row>` for a row of a batch."""
    return request if row is None else f"{request}/{row}"


def log_key(prefix: str, pod: str, start: str, seq: int, hour: datetime) -> str:
    """`<prefix>/date=YYYY-MM-DD/hour=HH/<pod>-<start>-<seq>.jsonl.gz`: one written batch of one hour."""
    return f"{prefix}/date={hour:%Y-%m-%d}/hour={hour:%H}/{pod}-{start}-{seq:06d}.jsonl.gz"


@dataclass(slots=True)
class _Chunk:
    """Encoded records of one hour (`hour`: seconds since the epoch at its start): the JSON lines from byte `start`
    on, `records` of them, are still to be written."""

    hour: int
    lines: bytes
    records: int
    start: int = 0


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
        self._slice = min(ENCODE_SLICE, flush_records)
        self._answers: deque[_Answer] = deque()  # noted, not yet encoded (oldest first, newer than any chunk)
        self._unencoded = 0  # their records
        self._chunks: deque[_Chunk] = deque()  # encoded, waiting for the writer (oldest first)
        self._waiting = 0  # their records
        self._lock = threading.Lock()  # guards the above and `counts`
        self._full = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._encode_lines = msgspec.json.Encoder().encode_lines

    # The request path -------------------------------------------------------------------------------------------

    def add(self, request: str, features: Sequence[Any], results: Sequence[Result], batch: bool) -> None:
        """Buffer one answered request's records (never blocks on S3); `features`: one object of the nine scores
        per row (a dict, or a msgspec struct with those fields). They are encoded later: the caller must not change
        `features` or `results` afterwards."""
        self._note((self._clock(), request, features, results, batch), len(results))

    def refuse(self, request: str, status: int) -> None:
        """Buffer the record of a prediction request refused as invalid (`status`: 400 or 422)."""
        self._note((self._clock(), request, (status,), (), False), 1)

    def _note(self, answer: _Answer, records: int) -> None:
        with self._lock:
            self._answers.append(answer)
            self._unencoded += records
            counts = self.counts
            counts.logged += records
            counts.buffered += records
            if self._unencoded >= self._slice:
                self._encode()
            if counts.buffered > self.max_records:
                self._drop(counts.buffered - self.max_records)
            full = self._waiting >= self.flush_records
        if full and not self._full.is_set():
            self._full.set()

    def _encode(self) -> None:
        """Encode the noted answers in one pass, one chunk per hour of prediction time (the lock held)."""
        version, digest = self.model_version, self.image_digest
        records: list[_Record | _Refusal] = []
        second = hour = -1
        text = ""
        for now, request, features, results, batch in self._answers:
            if int(now) != second:  # the date and time to the second, formatted once a second
                second = int(now)
                text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
                if second - second % 3600 != hour:
                    self._add_chunk(hour, records)
                    records = []
                    hour = second - second % 3600
            stamp = "%s.%06dZ" % (text, (now - second) * 1e6)  # noqa: UP031 - per record: half an f-string's time
            if not results:
                records.append(_Refusal(request, stamp, version, digest, features[0]))
            elif batch:
                records += [
                    _Record(request, row, stamp, version, digest, scores, label, probability)
                    for row, (scores, (label, probability)) in enumerate(zip(features, results, strict=True))
                ]
            else:
                ((label, probability),) = results
                records.append(_Record(request, None, stamp, version, digest, features[0], label, probability))
        self._add_chunk(hour, records)
        self._answers.clear()
        self._waiting += self._unencoded
        self._unencoded = 0

    def _add_chunk(self, hour: int, records: list[_Record | _Refusal]) -> None:
        if records:
            self._chunks.append(_Chunk(hour, self._encode_lines(records), len(records)))

    def _drop(self, excess: int) -> None:
        """Drop the `excess` oldest waiting records, or as many as wait (the lock held): whole chunks, then lines
        of the oldest one."""
        if self._waiting < excess:
            self._encode()
        counts = self.counts
        excess = min(excess, self._waiting)
        while excess:
            chunk = self._chunks[0]
            if chunk.records <= excess:
                self._chunks.popleft()
                dropped = chunk.records
            else:
                for _ in range(excess):
                    chunk.start = chunk.lines.index(b"\n", chunk.start) + 1
                chunk.records -= excess
                dropped = excess
            excess -= dropped
            self._waiting -= dropped
            counts.buffered -= dropped
            counts.dropped += dropped

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
            self._flush(everything=True, unencoded=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            full = self._full.wait(self.flush_seconds)
            self._full.clear()
            # Woken by a full buffer, it writes what the request path encoded (under load, the loop's thread encodes
            # the rest soon); on the timer, also what is not encoded yet.
            self._flush(everything=self._stop.is_set(), unencoded=not full)
        self._flush(everything=True, unencoded=True)

    def _take(self) -> tuple[Iterable[_Chunk], int]:
        """The waiting chunks, oldest first, up to `flush_records` records but at least one chunk, and their record
        count (they stay counted as buffered until written)."""
        with self._lock:
            if self._waiting <= self.flush_records:  # the usual case: all of them, at once
                taken, self._chunks = self._chunks, deque()
                size, self._waiting = self._waiting, 0
                return taken, size
            batch: list[_Chunk] = []
            size = 0
            while self._chunks and (size == 0 or size + self._chunks[0].records <= self.flush_records):
                chunk = self._chunks.popleft()
                batch.append(chunk)
                size += chunk.records
            self._waiting -= size
            return batch, size

    def _flush(self, everything: bool, unencoded: bool) -> None:
        """Write the buffer in batches of up to `flush_records`: the records there now, or (`everything`) until it
        is empty; with `unencoded` or `everything`, also those the request path has not encoded yet. A batch S3
        refuses is retried until it is written or the close deadline passes (then it is counted as dropped)."""
        with self._lock:
            if unencoded or everything:
                self._encode()
            waiting = self._waiting
        while everything or waiting > 0:
            chunks, size = self._take()
            if not size:
                return
            waiting -= size
            for hour, lines, records in _by_hour(chunks):
                self._seq += 1
                key = log_key(self.prefix, self.pod, self.start_stamp, self._seq, hour)
                body = igzip.compress(lines, compresslevel=1)  # ~0.4 µs a record, 5x zlib's level 1; ~8x smaller
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


def _by_hour(chunks: Iterable[_Chunk]) -> list[tuple[datetime, bytes, int]]:
    """The chunks' lines, one group per run of one hour of prediction time (chunks come in time order, so one per
    hour unless the clock stepped back): (hour, lines, record count)."""
    groups = []
    for hour, run in itertools.groupby(chunks, key=attrgetter("hour")):
        group = list(run)
        lines = b"".join(chunk.lines[chunk.start :] for chunk in group)
        groups.append((datetime.fromtimestamp(hour, UTC), lines, sum(chunk.records for chunk in group)))
    return groups
