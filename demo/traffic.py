"""`python -m demo.traffic URL`: rows of the real data set sent to the prediction service, each with its own request id.

Each request is one row drawn (seeded, with replacement) from the data set's rows without missing values; `--shift
bare_nuclei=+3` raises that score in every row (clipped to 1..10), to show the monitor a drift. The request ids are
`<prefix>-0000`, `<prefix>-0001`, ...: the prediction log keeps them as `request_id`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import numpy as np

from oncology_model.data import parse_csv
from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN
from oncology_model.predictionlog import REQUEST_ID
from oncology_model.sample_data import sample_data_csv

COUNT, CONCURRENCY, SEED = 600, 8, 0
MAX_CONCURRENCY = 64
TIMEOUT_SECONDS = 10
SHIFT_FORM = f"FEATURE=+K or FEATURE=-K (K 1..{SCORE_MAX - SCORE_MIN})"
_SHIFT = re.compile(r"([^=]*)=([+-][0-9]{1,3})")

Row = dict[str, int]


@cache
def real_rows() -> tuple[tuple[Row, ...], tuple[int, ...]]:
    """The data set's rows without missing values, and their classes (2 benign, 4 malignant)."""
    data = parse_csv(sample_data_csv())
    complete = ~np.isnan(data.X).any(axis=1)
    rows = tuple(dict(zip(FEATURES, map(int, x), strict=True)) for x in data.X[complete])
    return rows, tuple(4 if y else 2 for y in data.y[complete])


def shifted(row: Mapping[str, int], shifts: Mapping[str, int]) -> Row:
    """The row with each shift added to its feature's score, clipped to 1..10."""
    return {name: min(SCORE_MAX, max(SCORE_MIN, score + shifts.get(name, 0))) for name, score in row.items()}


def draw_rows(count: int, shifts: Mapping[str, int], seed: int) -> list[Row]:
    """`count` rows drawn with replacement from the real rows (seeded), shifted."""
    rows, _ = real_rows()
    return [shifted(row, shifts) for row in random.Random(seed).choices(rows, k=count)]


@dataclass(frozen=True)
class Sent:
    """What the service answered: request id -> prediction for each 2xx, request id -> reason for each failure."""

    ids: list[str]
    predictions: dict[str, str]
    failures: dict[str, str]
    seconds: float

    def malignant_share(self) -> float | None:
        """Share of the answered requests predicted malignant; None when none was answered."""
        if not self.predictions:
            return None
        return sum(p == "malignant" for p in self.predictions.values()) / len(self.predictions)

    def failure_counts(self) -> str:
        """The failures by reason, most frequent first, e.g. `3 x HTTP 503 Service Unavailable`."""
        return ", ".join(f"{n} x {reason}" for reason, n in Counter(self.failures.values()).most_common())


def _reason(exc: Exception) -> str:
    """Why a request failed, in words that repeat across requests (so that they can be counted)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def send(url: str, rows: Sequence[Mapping[str, int]], prefix: str, concurrency: int = CONCURRENCY) -> Sent:
    """POST each row to `url`/v1/predictions (`concurrency` at a time) with X-Request-ID `<prefix>-<n:04d>`."""
    ids = [f"{prefix}-{n:04d}" for n in range(len(rows))]
    endpoint = f"{url.rstrip('/')}/v1/predictions"

    def post(n: int) -> tuple[str, str, bool]:
        request = urllib.request.Request(
            endpoint,
            data=json.dumps(rows[n]).encode(),
            headers={"content-type": "application/json", "x-request-id": ids[n]},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
                echoed, prediction = answer.headers["x-request-id"], json.load(answer)["prediction"]
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
            return ids[n], _reason(exc), False
        if echoed != ids[n]:
            return ids[n], f"X-Request-ID not echoed (got {echoed!r})", False
        return ids[n], str(prediction), True

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(post, range(len(rows))))
    return Sent(
        ids,
        {i: text for i, text, ok in results if ok},
        {i: text for i, text, ok in results if not ok},
        time.perf_counter() - start,
    )


def summary(url: str, sent: Sent, shifts: Mapping[str, int], seed: int) -> list[str]:
    """The run in a few lines: counts, failures by reason, malignant share, time, ids, shift."""
    share = sent.malignant_share()
    shift = ", ".join(f"{name} {k:+d}" for name, k in shifts.items()) + " (clipped to 1..10)" if shifts else "none"
    return [
        f"sent      {len(sent.ids)} to {url} (seed {seed}) in {sent.seconds:.2f} s",
        f"answered  {len(sent.predictions)} (2xx), malignant share {'n/a' if share is None else f'{share:.3f}'}",
        f"failed    {len(sent.failures)}" + (f": {sent.failure_counts()}" if sent.failures else ""),
        f"ids       {sent.ids[0]} .. {sent.ids[-1]} (request_id in the prediction log)",
        f"shift     {shift}",
    ]


def _url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname) and not (parts.query or parts.fragment)
        _ = parts.port  # ValueError unless a number 0..65535 (as urlsplit's for an unclosed "[" in the host)
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"must be http://HOST[:PORT] or https://HOST[:PORT], got {text!r}")
    return text.rstrip("/")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", text) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer {low}..{high}, got {text!r}")
        return int(text)

    return parse


def _shift(text: str) -> tuple[str, int]:
    match = _SHIFT.fullmatch(text)
    if match is None or not 1 <= abs(int(match[2])) <= SCORE_MAX - SCORE_MIN:
        problem = "malformed"
    elif match[1] not in FEATURES:
        problem = f"unknown feature {match[1]!r}"
    else:
        return match[1], int(match[2])
    raise argparse.ArgumentTypeError(
        f"{text!r} {problem}: the form is {SHIFT_FORM}, FEATURE one of {', '.join(FEATURES)}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo.traffic", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", metavar="URL", type=_url, help="the service, e.g. http://127.0.0.1:8080")
    parser.add_argument("--count", type=_int_in(1, 1_000_000), default=COUNT, help=f"requests (default {COUNT})")
    parser.add_argument(
        "--shift",
        type=_shift,
        action="append",
        default=[],
        metavar="FEATURE=+K",
        help=f"add K to FEATURE's score in every row, clipped to 1..10 ({SHIFT_FORM}); repeatable",
    )
    parser.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=SEED, help=f"seed of the draw (default {SEED})")
    parser.add_argument("--id-prefix", help="request ids are <prefix>-0000, ... (default traffic-<UTC timestamp>)")
    parser.add_argument(
        "--concurrency",
        type=_int_in(1, MAX_CONCURRENCY),
        default=CONCURRENCY,
        help=f"requests in flight (default {CONCURRENCY})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Send the traffic and print the summary; 1 when any request failed, 2 on bad arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    shifts = dict(args.shift)
    if len(shifts) < len(args.shift):
        parser.error("argument --shift: a feature is given twice; give each feature once")
    prefix = args.id_prefix if args.id_prefix is not None else f"traffic-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    last = f"{args.count - 1:04d}"
    if not REQUEST_ID.fullmatch(f"{prefix}-{last}"):
        parser.error(
            f"argument --id-prefix: {prefix!r} makes ids such as '{prefix}-{last}'; ids must match {REQUEST_ID.pattern}"
        )
    sent = send(args.url, draw_rows(args.count, shifts, args.seed), prefix, args.concurrency)
    sys.stdout.write("".join(f"{line}\n" for line in summary(args.url, sent, shifts, args.seed)))
    return 1 if sent.failures else 0


if __name__ == "__main__":
    sys.exit(main())
