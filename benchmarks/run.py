"""Benchmarks, run on demand (`make benchmark`); results go to docs/benchmarks.md.

- in process: one prediction the seed's way (one-row DataFrame + Pipeline.predict), with Pipeline.predict_proba on a
  numpy row, with our Classifier; and our ASGI app's own time per request, without a server;
- over HTTP with wrk: the seed-style baseline (benchmarks/seed_service.py: Flask + gunicorn) and our service
  (`python -m oncology_model serve`, /metrics on) side by side, alternating, at 1, 16 and 64 connections, one worker
  each, then two; the batch endpoint in rows/s; a py-spy profile of our server under load;
- image (`--image`, needs Docker): cold build vs a model-only change, the image size and what fills it, and the same
  HTTP load against a container of the built image;
- pipeline: wall time of each stage of one `make demo`-style run (from its summary);
- nights: a full nightly run and the next night's run on unchanged inputs (no change), on the local stand-ins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.load import (
    QUIET_CORES,
    QUIET_WAIT,
    Load,
    PairedRatio,
    Results,
    Summary,
    Target,
    Wrk,
    at_once,
    container_server,
    ensure_wrk,
    free_port,
    log,
    process_server,
    side_by_side,
    unreachable_endpoint,
)

if TYPE_CHECKING:
    from oncology_pipeline.image import ImageInfo

DOCS = Path("docs/benchmarks.md")
LEVELS = (1, 16, 64)
BATCH_ROWS = 1000
SEED = "seed-style: Flask + gunicorn, DataFrame + `Pipeline.predict`"
OURS = "ours: `python -m oncology_model serve`"
OURS_CONTAINER = "ours: a container of the built image"
LOG_OFF = "ours, prediction log off"
LOG_ON = "ours, prediction log on (to a local S3: moto)"
LOG_UNREACHABLE = "ours, prediction log on, S3 unreachable"
#: The prediction log's counts in /metrics.
LOG_METRICS = {
    "logged": 'oncology_prediction_log_records_total{outcome="logged"}',
    "written": 'oncology_prediction_log_records_total{outcome="written"}',
    "dropped": 'oncology_prediction_log_records_total{outcome="dropped"}',
    "buffered": "oncology_prediction_log_buffered_records",
    "failed writes": "oncology_prediction_log_failed_writes_total",
}


@dataclass
class Targets:
    """The issue's targets, filled in as the sections measure them."""

    rows: list[tuple[str, str, bool | None]] = field(default_factory=list)

    def add(self, target: str, measured: str, met: bool | None) -> None:
        """One target: what was measured, and whether it is met (None: not measured in this run)."""
        self.rows.append((target, measured, met))

    def table_rows(self) -> list[str]:
        """One markdown table row per target."""
        verdict = {True: "**met**", False: "**not met**", None: "not measured"}
        return [f"| {target} | {measured} | {verdict[met]} |" for target, measured, met in self.rows]

    def lines(self) -> list[str]:
        """The markdown table."""
        return ["## Targets (issue 12)", "", "| target | measured in this run | |", "|---|---|---|", *self.table_rows()]


#: The sections of the page, in order; `--only` names them.
SECTIONS = ("prediction", "http_load", "batch", "prediction_log", "profile", "image", "pipeline", "nights")


def markers(section: str) -> tuple[str, str]:
    """The comments around a section in docs/benchmarks.md, by which `--only` finds it again."""
    return f"<!-- section:{section} -->", f"<!-- /section:{section} -->"


def merge(document: str, sections: dict[str, list[str]], targets: Targets) -> str:
    """`document` with these sections and these targets' rows replaced (or added: a section at the end, a row at the
    end of the targets table); everything else unchanged."""
    for section, lines in sections.items():
        start, end = markers(section)
        block = "\n".join([start, *lines, end])
        at, until = document.find(start), document.find(end)
        if at >= 0 and until > at:
            document = document[:at] + block + document[until + len(end) :]
        else:
            document = document.rstrip("\n") + "\n\n" + block + "\n"
    lines = document.split("\n")
    table = [i for i, line in enumerate(lines) if line.startswith("| ") and " | measured in this run | " in line]
    for (target, _, _), row in zip(targets.rows, targets.table_rows(), strict=True):
        same = [i for i, line in enumerate(lines) if line.startswith(f"| {target} |")]
        if same:
            lines[same[0]] = row
        elif table:
            after = table[0] + 2  # the header and the |---| line
            while after < len(lines) and lines[after].startswith("|"):
                after += 1
            lines.insert(after, row)
    return "\n".join(lines)


def _median_us(fn: Callable[[], object], repeat: int = 7, number: int = 200) -> float:
    """Median over `repeat` runs of the mean time of `number` calls, in microseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(runs)


def _asgi_us(app: Any, path: str, body: bytes, number: int) -> float:
    """Median time of one request through the ASGI app in this process: no server, no socket (our code only)."""
    import uvloop

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    request = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def measure() -> float:
        async with app.router.lifespan_context(app):
            runs = []
            for _ in range(7):
                start = time.perf_counter()
                for _ in range(number):
                    await app(dict(scope), receive, send)
                runs.append((time.perf_counter() - start) / number * 1e6)
        return statistics.median(runs)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(measure())
    if set(statuses) != {200}:
        raise SystemExit(f"{path}: the app answered {sorted(set(statuses))}")
    return result


def prediction(bundle: Path, targets: Targets) -> list[str]:
    """Latency of one prediction, three ways, side by side; our app's own time per request."""
    from benchmarks.seed_service import seed_predict
    from oncology_model.classifier import Classifier
    from oncology_model.datamodel import EXAMPLE_MALIGNANT, Tumor
    from oncology_model.service import ServiceSettings, create_app

    classifier = Classifier.from_bundle(bundle)
    tumor = Tumor(**EXAMPLE_MALIGNANT)
    row = np.array([tumor.as_row()], dtype=np.float64)
    seed = _median_us(lambda: seed_predict(classifier.pipeline, EXAMPLE_MALIGNANT))
    proba = _median_us(lambda: classifier.pipeline.predict_proba(row))
    ours = _median_us(lambda: classifier.predict(tumor), number=20000)
    batch = [tumor] * BATCH_ROWS
    ours_batch = _median_us(lambda: classifier.predict_many(batch), number=20) / BATCH_ROWS
    app = create_app(ServiceSettings(model_dir=bundle))
    one = json.dumps(EXAMPLE_MALIGNANT).encode()
    service = _asgi_us(app, "/v1/predictions", one, number=20000)
    many = json.dumps({"tumors": [EXAMPLE_MALIGNANT] * BATCH_ROWS}).encode()
    service_batch = _asgi_us(app, "/v1/predictions/batch", many, number=50)
    targets.add("`Classifier.predict` ≤ 5 µs (default model)", f"{ours:.2f} µs", ours <= 5)
    return [
        "## One prediction in process (median of 7 runs)",
        "",
        "| path | µs per prediction | vs seed |",
        "|---|---:|---:|",
        f"| seed: a one-row DataFrame per request + `Pipeline.predict` | {seed:.1f} | 1.0× |",
        f"| `Pipeline.predict_proba` on a (1, 9) numpy row | {proba:.1f} | {seed / proba:.1f}× |",
        f"| `Classifier.predict(Tumor)` (folded linear path, plain Python floats) | {ours:.2f} | {seed / ours:.0f}× |",
        f"| `Classifier.predict_many`, 1,000 tumors, per tumor | {ours_batch:.2f} | {seed / ours_batch:.0f}× |",
        f"| our ASGI app, `POST /v1/predictions` without server or socket (fast path, metrics) | {service:.1f} | – |",
        f"| our ASGI app, `POST /v1/predictions/batch` of 1,000, per tumor | {service_batch / BATCH_ROWS:.2f} | – |",
        "",
        "The ASGI rows are what our code costs per request; the rest of a request's time over HTTP is the server's "
        "(uvicorn, httptools, uvloop) and the kernel's.",
    ]


def _servers(bundle: Path, workers: int) -> tuple[tuple[str, list[str], int, dict[str, str]], ...]:
    """The baseline's and our server's commands, each on a free port."""
    python = sys.executable
    seed_port, ours_port = free_port(), free_port()
    seed = [python, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync"]
    seed += ["--bind", f"127.0.0.1:{seed_port}", "--log-level", "warning", "benchmarks.seed_service:create_app()"]
    ours = [python, "-m", "oncology_model", "serve", "--model", str(bundle), "--port", str(ours_port)]
    ours += ["--workers", str(workers)]
    return (
        (SEED, seed, seed_port, {"SEED_MODEL_DIR": str(bundle)}),
        (OURS, ours, ours_port, {"ONCOLOGY_ACCESS_LOG": "false"}),
    )


def _get(url: str) -> str:
    """The body of a GET."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def check_answers(targets: Sequence[Target], body: bytes) -> None:
    """Every server answers the body with 200 before it is loaded."""
    import urllib.request

    for target in targets:
        request = urllib.request.Request(
            target.url + "/v1/predictions", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        if answer.get("prediction") != "malignant":
            raise SystemExit(f"{target.name} answered {answer}")


def _load_table(results: Results, names: Sequence[str], levels: Sequence[int]) -> list[str]:
    """One row per server and level; the last column is the ratio of req/s to the first server's."""
    lines = [
        "| connections | server | req/s (median) | req/s by round | p50 ms | p99 ms | non-2xx | socket errors "
        "| server CPU µs/request | other work, cores | vs baseline |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        baseline = Summary.of(results[(names[0], level)])
        for name in names:
            s = Summary.of(results[(name, level)])
            rounds = " / ".join(f"{rps:,.0f}" for rps in s.rounds_rps)
            lines.append(
                f"| {level} | {name} | {s.rps:,.0f} | {rounds} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.non_2xx} "
                f"| {s.socket_errors} | {s.cpu_us:.0f} | {s.others:.2f} | {s.rps / baseline.rps:.1f}× |"
            )
    return lines


def _single_worker_targets(results: Results, ours_name: str, where: str, targets: Targets) -> None:
    """The issue's targets for one worker at 16 connections, /metrics on."""
    ours, seed = Summary.of(results[(ours_name, 16)]), Summary.of(results[(SEED, 16)])
    targets.add(
        f"≥ 10,000 req/s at 16 connections, one worker, /metrics on ({where})",
        f"{ours.rps:,.0f} req/s",
        ours.rps >= 10_000,
    )
    targets.add(
        f"p99 ≤ 5 ms at 16 connections ({where})",
        f"{ours.p99_ms:.2f} ms (other work on the machine meanwhile: {ours.others:.2f} cores)",
        ours.p99_ms <= 5,
    )
    errors = sum(
        load.non_2xx + load.socket_errors for (name, _), loads in results.items() if name == ours_name for load in loads
    )
    targets.add(f"zero errors, every level and round ({where})", f"{errors}", errors == 0)
    ratio = ours.rps / seed.rps
    targets.add(
        f"≥ 15× the seed-style baseline in the same run, 16 connections ({where})", f"{ratio:.1f}×", ratio >= 15
    )


def http_load(bundle: Path, wrk: Wrk, rounds: int, seconds: int, targets: Targets) -> list[str]:
    """The baseline and ours, alternating, one worker each, then two each."""
    from oncology_model.datamodel import EXAMPLE_MALIGNANT

    body = json.dumps(EXAMPLE_MALIGNANT).encode()
    lines = [
        "## Over HTTP: the seed-style baseline and ours, side by side",
        "",
        f"wrk, one thread, `POST /v1/predictions` with one tumor; {seconds} s per run; the servers take turns "
        f"(the order flips every round), {rounds} rounds; each run waits up to {QUIET_WAIT:.0f} s for the rest of the "
        f"machine to use under {QUIET_CORES} cores; medians of the rounds, errors summed over them. "
        "`non-2xx` is wrk's count of status ≥ 400 (neither server redirects); server CPU is the CPU time of the "
        "server's processes per request (robust to other work on the machine, unlike req/s); other work is the CPU "
        f"the rest of the machine used meanwhile, in cores (of {os.cpu_count()}), the noise behind req/s and p99.",
    ]
    for workers in (1, 2):
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(process_server(*server)) for server in _servers(bundle, workers)]
            check_answers(servers, body)
            results = side_by_side(wrk, servers, "/v1/predictions", body, LEVELS, rounds, seconds)
        lines += ["", f"### {workers} worker{'s' if workers > 1 else ''} each", ""]
        lines += _load_table(results, [SEED, OURS], LEVELS)
        if workers == 1:
            _single_worker_targets(results, OURS, "venv", targets)
    lines += [
        "",
        "Commands (ports vary): `gunicorn --workers N --worker-class sync --bind 127.0.0.1:PORT "
        "'benchmarks.seed_service:create_app()'` with `SEED_MODEL_DIR`; `python -m oncology_model serve --model "
        "MODEL --port PORT --workers N`; `"
        + " ".join(wrk.command("URL", body, 16, seconds)[:-2]).replace(wrk.executable, "wrk")
        + " post.lua URL`.",
    ]
    return lines


def log_counts(metrics: str) -> dict[str, float]:
    """The prediction log's counts in a server's /metrics text (the keys of LOG_METRICS)."""
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("oncology_prediction_log_"))
    if not set(LOG_METRICS.values()) <= set(samples) or not float(samples[LOG_METRICS["logged"]]):
        raise SystemExit(f"the prediction log's metrics are missing or it logged nothing: {metrics[-800:]}")
    return {name: float(samples[metric]) for name, metric in LOG_METRICS.items()}


def prediction_log(bundle: Path, wrk: Wrk, rounds: int, seconds: int, targets: Targets) -> list[str]:
    """One worker with the prediction log off, one with it on (writing to a moto server), one with it on while S3 is
    unreachable, side by side."""
    import logging

    import boto3

    from oncology_model.datamodel import EXAMPLE_MALIGNANT
    from oncology_model.service import LOG_S3_CONFIG, ServiceSettings
    from standins.aws import moto_server

    # The ratios judged here are a few per cent apart: twice the rounds of the other sections.
    rounds *= 2
    defaults = {name: field.default for name, field in ServiceSettings.model_fields.items()}

    body = json.dumps(EXAMPLE_MALIGNANT).encode()
    aws = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs a line per PUT
    with moto_server() as endpoint, unreachable_endpoint() as unreachable, contextlib.ExitStack() as stack:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        ).create_bucket(Bucket="bench-log")
        logging_env = {**aws, "ONCOLOGY_LOG_BUCKET": "bench-log"}
        variants: tuple[tuple[str, dict[str, str]], ...] = (
            (LOG_OFF, {}),
            (LOG_ON, {**logging_env, "AWS_ENDPOINT_URL_S3": endpoint}),
            (LOG_UNREACHABLE, {**logging_env, "AWS_ENDPOINT_URL_S3": unreachable}),
        )
        servers = []
        for name, extra in variants:
            _, (_, command, port, env) = _servers(bundle, 1)
            servers.append(stack.enter_context(process_server(name, command, port, {**env, **extra})))
        started = time.monotonic()
        check_answers(servers, body)
        results = side_by_side(wrk, servers, "/v1/predictions", body, (16,), rounds, seconds)
        off_server, on_server, down_server = servers
        on_off = at_once(wrk, [off_server, on_server], "/v1/predictions", body, 16, rounds, seconds)
        down_on = at_once(wrk, [on_server, down_server], "/v1/predictions", body, 16, rounds, seconds)
        on_counts, down_counts = (log_counts(_get(server.url + "/metrics")) for server in servers[1:])
        outage = time.monotonic() - started
    summary = {name: Summary.of(results[(name, 16)]) for name, _ in variants}

    def ratio(together: dict[str, list[Load]], name: str, baseline: str) -> tuple[PairedRatio, str]:
        """The paired ratio of two servers loaded together, and their server CPU per request."""
        us = {server: Summary.of(together[server]).cpu_us for server in (name, baseline)}
        cpu = f"server CPU {us[name]:.0f} vs {us[baseline]:.0f} µs/request"
        return PairedRatio.of(together[name], together[baseline]), cpu

    on, on_cpu = ratio(on_off, LOG_ON, LOG_OFF)
    targets.add(
        "prediction log on ≥ 90 % of off, 16 connections, one worker",
        f"{on.text()}; {on_cpu}",
        on.median >= 0.9,
    )
    p99 = summary[LOG_ON].p99_ms
    targets.add("p99 ≤ 5 ms with the prediction log on, 16 connections", f"{p99:.2f} ms", p99 <= 5)
    down, down_cpu = ratio(down_on, LOG_UNREACHABLE, LOG_ON)
    targets.add(
        "S3 unreachable: throughput ≥ 90 % of S3 reachable (prediction log on, 16 connections, one worker)",
        f"{down.text()}; {down_cpu}",
        down.median >= 0.9,
    )
    cap = defaults["log_max_records"]

    def counted(counts: dict[str, float]) -> str:
        text = (
            f"logged {counts['logged']:,.0f}, written {counts['written']:,.0f}, dropped {counts['dropped']:,.0f}, "
            f"buffered {counts['buffered']:,.0f}, failed writes {counts['failed writes']:,.0f}"
        )
        if counts["logged"] != counts["written"] + counts["dropped"] + counts["buffered"]:
            return text + " (**these do not add up**: logged should be written + dropped + buffered)"
        if counts["dropped"] and counts["buffered"] < cap:
            return text + f" (**records dropped while the buffer is below its cap** of {cap:,})"
        return text

    return [
        "## The prediction log: off, on, and on with S3 unreachable, side by side",
        "",
        f"One worker each, `POST /v1/predictions`, 16 connections, {rounds} rounds of {seconds} s (twice the rounds "
        "of the other sections: the ratios judged here are a few per cent apart), turns as above (the table). "
        f"Then, for each ratio judged, {rounds} rounds of {seconds} s that load its two servers at the same time, "
        "one wrk each (a server and a wrk per core): on this shared machine one core can run at half speed for "
        "seconds, so servers loaded in turn may be compared across a fast and a slow core (in the table, the same "
        "server's req/s moves by up to half between rounds), while two servers loaded at once share the cores "
        "equally and compare as their CPU time per request does. The ratio targets take the median of these "
        "rounds' ratios, with the interval of order statistics that covers that "
        "median (the sign test's: it assumes nothing of how rounds vary), and the medians of their server CPU. "
        "Both logging servers run with the service's defaults: a write every "
        f"{defaults['log_flush_seconds']:.0f} s or as soon as {defaults['log_flush_records']:,} records wait, a "
        f"buffer of at most {cap:,} records, botocore's "
        f"{LOG_S3_CONFIG['retries']['mode']} retry mode (3 attempts) with a {LOG_S3_CONFIG['connect_timeout']} s "
        "connect timeout, then the writer's own back-off (0.5 s doubling to 30 s). One writes to a moto server on "
        "loopback (`ONCOLOGY_LOG_BUCKET`, `AWS_ENDPOINT_URL_S3`). The other's `AWS_ENDPOINT_URL_S3` is a loopback "
        "port that never answers a connection (a listening socket with a full accept queue: the kernel drops the "
        "SYNs), so every attempt waits out the connect timeout, as when S3 is unreachable (a lost route, a "
        "firewall that drops); a refused connection would fail at once. S3 stayed unreachable for that server's "
        f"whole {outage:.0f} s run, its writer retrying the first batch all along.",
        "",
        f"Counts from `/metrics` after the load (logged = written + dropped + buffered; dropped only beyond the cap "
        f"of {cap:,}, the batch being retried included), S3 reachable: {counted(on_counts)}; S3 "
        f"unreachable: {counted(down_counts)}.",
        "",
        *_load_table(results, [LOG_OFF, LOG_ON, LOG_UNREACHABLE], (16,)),
        "",
        "Two at a time (each server had about half the 2 cores, with the two wrk processes):",
        "",
        "| servers loaded together | server | req/s (median) | req/s by round | server CPU µs/request (median) |",
        "|---|---|---:|---|---:|",
        *[
            f"| {' + '.join(pair)} | {name} | {s.rps:,.0f} | {' / '.join(f'{r:,.0f}' for r in s.rounds_rps)} "
            f"| {s.cpu_us:.0f} |"
            for pair in (on_off, down_on)
            for name, s in ((name, Summary.of(loads)) for name, loads in pair.items())
        ],
    ]


def batch(bundle: Path, wrk: Wrk, rounds: int, seconds: int, targets: Targets) -> list[str]:
    """The batch endpoint at 1,000 tumors per request, in rows per second."""
    from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT

    body = json.dumps({"tumors": [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT] * (BATCH_ROWS // 2)}).encode()
    _, (name, command, port, env) = _servers(bundle, 1)
    with process_server(name, command, port, env) as ours:
        results = side_by_side(wrk, [ours], "/v1/predictions/batch", body, (1, 16), rounds, seconds)
    lines = [
        "## Batch endpoint: 1,000 tumors per request, one worker",
        "",
        f"`POST /v1/predictions/batch`, {len(body) / 1000:.0f} kB per request; wrk as above.",
        "",
        "| connections | rows/s (median) | requests/s | p50 ms | p99 ms | non-2xx | server CPU µs/row "
        "| other work, cores |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in (1, 16):
        s = Summary.of(results[(name, level)])
        lines.append(
            f"| {level} | {s.rps * BATCH_ROWS:,.0f} | {s.rps:,.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} "
            f"| {s.non_2xx + s.socket_errors} | {s.cpu_us / BATCH_ROWS:.2f} | {s.others:.2f} |"
        )
    best = Summary.of(results[(name, 16)]).rps * BATCH_ROWS
    targets.add(
        "batch ≥ 500,000 rows/s over HTTP (1,000 per request, 16 connections)", f"{best:,.0f} rows/s", best >= 500_000
    )
    return lines


def profile(bundle: Path, wrk: Wrk, seconds: int) -> list[str]:
    """A py-spy profile of our server at 16 connections, by component and by line."""
    from benchmarks.profiling import py_spy, record, summarise
    from oncology_model.datamodel import EXAMPLE_MALIGNANT

    body = json.dumps(EXAMPLE_MALIGNANT).encode()
    _, (name, command, port, env) = _servers(bundle, 1)
    raw = Path(tempfile.mkdtemp(prefix="bench-profile-")) / "profile.txt"
    with process_server(name, command, port, env) as ours:
        load = record(wrk, ours, "/v1/predictions", body, 16, seconds, raw)
    samples, components, leaves = summarise(raw)
    shutil.rmtree(raw.parent, ignore_errors=True)
    spy = " ".join(Path(part).name if part.startswith("/") else part for part in py_spy())
    return [
        "## Where the time goes: py-spy on our server at 16 connections",
        "",
        f"`{spy} record --pid PID --duration {seconds} --rate 250 --nonblocking --format raw` while wrk loads it "
        f"({load.rps:,.0f} req/s under the profiler); {samples:,} busy samples. Time in C (socket writes, uvloop, "
        "msgspec, numpy) counts on the Python line that called it.",
        "",
        "| component | share of busy time |",
        "|---|---:|",
        *[f"| {component} | {share:.1%} |" for component, share in components],
        "",
        "| line (own time) | share |",
        "|---|---:|",
        *[f"| `{leaf}` | {share:.1%} |" for leaf, share in leaves],
    ]


_SIZES = """
import importlib.metadata as metadata, json, os
sizes = {}
for dist in metadata.distributions():
    total = 0
    for name in dist.files or []:
        try:
            total += os.path.getsize(dist.locate_file(name))
        except OSError:
            pass
    sizes[dist.metadata["Name"]] = total
print(json.dumps(sizes))
"""


def _previous_image_mb() -> float | None:
    """The image size the last docs/benchmarks.md reported, to see whether the image grew."""
    found = re.search(r"image size \*\*([0-9.]+) MB\*\*", DOCS.read_text()) if DOCS.exists() else None
    return float(found.group(1)) if found else None


def base_image() -> str:
    """The base image the benchmark images are built on (`ONCOLOGY_BASE_IMAGE`, else the provisioned one)."""
    return os.environ.get("ONCOLOGY_BASE_IMAGE", "oncology-base:bookworm")


def build_service_image(
    client: Any, bundle_dir: Path, tag: str, context_dir: Path, wheel_cache: Path | None, *, nocache: bool = False
) -> tuple[float, float, ImageInfo]:
    """Build the serving image of a bundle the way publish does (build context, then the classic build).

    Returns the seconds spent preparing the context, the seconds in all, and the image. `wheel_cache` None is the
    pipeline's own wheel cache.
    """
    from oncology_model.bundle import read_metadata
    from oncology_pipeline.buildcontext import prepare_build_context
    from oncology_pipeline.image import build_image

    start = time.perf_counter()
    context = prepare_build_context(Path.cwd(), bundle_dir, context_dir, wheel_cache)
    prepared = time.perf_counter() - start
    args = {"BASE_IMAGE": base_image(), "MODEL_VERSION": read_metadata(bundle_dir).model_version}
    info = build_image(client, context, tag, args, lambda _: None, nocache=nocache)
    return prepared, time.perf_counter() - start, info


def image(bundle: Path, wrk: Wrk, rounds: int, seconds: int, targets: Targets) -> list[str]:
    """Cold build vs a model-only change, what fills the image, and HTTP load against a container of it."""
    import docker

    from oncology_model.bundle import save_bundle
    from oncology_model.classifier import Classifier
    from oncology_model.datamodel import EXAMPLE_MALIGNANT

    client = docker.from_env(timeout=600)
    base = base_image()
    work = Path(tempfile.mkdtemp(prefix="bench-image-"))
    previous_mb = _previous_image_mb()
    body = json.dumps(EXAMPLE_MALIGNANT).encode()
    try:

        def build(bundle_dir: Path, tag: str, cache: Path, nocache: bool) -> tuple[float, float, int]:
            prepared, total, info = build_service_image(
                client, bundle_dir, f"oncology-bench:{tag}", work / f"ctx-{tag}", cache, nocache=nocache
            )
            return prepared, total, info.size

        log("image: cold build")
        cold_prepare, cold_total, size = build(bundle, "cold", work / "wheels-cold", nocache=True)
        changed = work / "model-changed"
        classifier = Classifier.from_bundle(bundle)
        save_bundle(classifier.pipeline, classifier.metadata.model_copy(update={"model_version": "bench-2"}), changed)
        log("image: rebuild after a model-only change")
        warm_prepare, warm_total, _ = build(changed, "model-only", work / "wheels-cold", nocache=False)
        sizes: dict[str, int] = json.loads(
            client.containers.run("oncology-bench:cold", ["python", "-c", _SIZES], remove=True, read_only=True)
        )
        log("image: HTTP load against a container of the cold-built image")
        (seed_name, seed_command, seed_port, seed_env), _ = _servers(bundle, 1)
        with (
            process_server(seed_name, seed_command, seed_port, seed_env) as seed,
            container_server(OURS_CONTAINER, client, "oncology-bench:cold") as box,
        ):
            check_answers([seed, box], body)
            results = side_by_side(wrk, [seed, box], "/v1/predictions", body, LEVELS, rounds, seconds)
        _single_worker_targets(results, OURS_CONTAINER, "container", targets)
    finally:
        for tag in ("cold", "model-only"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(f"oncology-bench:{tag}", force=True)
        shutil.rmtree(work, ignore_errors=True)
    grew = "" if previous_mb is None else f" (the previous run of this benchmark: {previous_mb:.1f} MB)"
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:10]
    scipy_mb = sizes.get("scipy", 0) / 1e6
    return [
        "## Web-service image (docker SDK, classic builder)",
        "",
        f"Base image `{base}`; image size **{size / 1e6:.1f} MB**{grew}.",
        "",
        "| build | context (wheelhouse, wheel, bundle) s | total s |",
        "|---|---:|---:|",
        f"| cold (empty wheel cache, no layer reused) | {cold_prepare:.1f} | {cold_total:.1f} |",
        f"| after a model-only change | {warm_prepare:.1f} | {warm_total:.1f} |",
        "",
        f"What fills it: the installed distributions, {sum(sizes.values()) / 1e6:.1f} MB in all; the ten largest:",
        "",
        "| distribution | MB |",
        "|---|---:|",
        *[f"| {name} | {count / 1e6:.1f} |" for name, count in largest],
        "",
        f"scipy is {scipy_mb:.1f} MB of it. The folded linear model needs only numpy (its probabilities equal "
        "scikit-learn's to 1e-12), but the bundle is a skops file of scikit-learn objects, and scikit-learn imports "
        f"scipy: serving without scipy would save about {scipy_mb:.0f} MB and needs a second bundle format (the "
        "folded weights) plus scikit-learn for every other estimator. Not adopted here.",
        "",
        "### The same load against the built image",
        "",
        "`docker run --read-only` of the image with its own CMD (one worker), reached on its bridge address "
        "(no port publishing, no docker-proxy), against the seed-style baseline in the venv, alternating as above.",
        "",
        *_load_table(results, [SEED, OURS_CONTAINER], LEVELS),
    ]


def pipeline(summary: Path) -> list[str]:
    """Wall time by stage of one pipeline run, from its summary.json."""
    data = json.loads(summary.read_text())
    rows = [f"| {stage} | {seconds:.1f} |" for stage, seconds in data["seconds"].items()]
    return [
        "## Pipeline wall time by stage",
        "",
        f"From `{summary}` (version {data['version']}; `make demo` on embedded defaults).",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *rows,
        f"| **total of stages** | {sum(data['seconds'].values()):.1f} |",
    ]


def nights(targets: Targets) -> list[str]:
    """Flow-run time of a full nightly run, then of the next run on the same inputs (it ends as no change)."""
    from prefect import get_client

    from demo.stack import local_stack

    work = Path(tempfile.mkdtemp(prefix="bench-nights-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    rows = []
    try:
        with local_stack(work) as stack:
            os.environ.update({**stack.env, "ONCOLOGY_WORK_DIR": str(work / "runs")})
            from flows.pipeline import train_test_publish_deploy

            for night in ("first night: full run", "second night: same inputs (no change)"):
                state = train_test_publish_deploy(return_state=True)
                if not state.is_completed() or state.state_details.flow_run_id is None:
                    raise SystemExit(f"{night}: the run ended {state.type.value}: {state.message}")
                with get_client(sync_client=True) as client:
                    run = client.read_flow_run(state.state_details.flow_run_id)
                rows.append((night, run.total_run_time.total_seconds()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (full, full_s), (same, same_s) = rows
    targets.add("no-change night ≤ 10 % of a full run", f"{same_s / full_s:.1%}", same_s / full_s <= 0.10)
    return [
        "## Unattended nights: a full run, then a night with nothing new",
        "",
        "Two `train-test-publish-deploy` runs on the local stand-ins (moto, registry, Kubernetes stand-in with "
        "real pods); the second finds production built from the same inputs (fingerprint) and stops.",
        "",
        "| run | flow-run time s | vs full |",
        "|---|---:|---:|",
        f"| {full} | {full_s:.1f} | 100 % |",
        f"| {same} | {same_s:.1f} | {same_s / full_s:.1%} |",
    ]


def machine() -> str:
    """CPU model, cores, memory, kernel and Python."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else "MemTotal: 0 kB"
    memory_gb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) / 1e6  # type: ignore[union-attr]
    flags = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    build = "PGO" if "--enable-optimizations" in flags else "no PGO"
    build += ", LTO" if "--with-lto" in flags else ", no LTO"
    return (
        f"{model}, {os.cpu_count()} cores, {memory_gb:.0f} GB; {platform.system()} {platform.release()}; "
        f"the venv's Python {platform.python_version()} ({build}; {sys.executable})"
    )


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def train_default_bundle() -> Path:
    """The benchmarks' model: the default estimator trained on the real data, in a new temporary directory. 200
    bootstrap resamples and one cross-validation pass for the gate's floors: the fitted model is the same as with the
    defaults, made in a fraction of the time."""
    from oncology_model.candidate import make_candidate
    from oncology_model.config import GateThresholds, TrainingConfig
    from oncology_model.data import parse_csv
    from oncology_model.sample_data import sample_data_csv

    bundle = Path(tempfile.mkdtemp(prefix="bench-")) / "model"
    make_candidate(
        parse_csv(sample_data_csv()),
        TrainingConfig(),
        version="20261125T000000Z-bench000",
        directory=bundle,
        gate=GateThresholds(cv_repeats=1),
        resamples=200,
    )
    return bundle


def main() -> int:
    """Run the benchmarks asked for and write docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="model bundle (default: train one on the real data)")
    parser.add_argument("--image", action="store_true", help="also the image: builds, size, load (needs Docker)")
    parser.add_argument("--summary", type=Path, help="a pipeline run's summary.json (e.g. from make demo)")
    parser.add_argument("--nights", action="store_true", help="a full night vs a no-change night (needs Docker)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each HTTP load (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of each wrk run (default 10)")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only this section (repeatable; one of {', '.join(SECTIONS)}) and replace only it and its targets' "
        "rows in docs/benchmarks.md",
    )
    args = parser.parse_args()
    optional = {"image": args.image, "pipeline": args.summary is not None, "nights": args.nights}
    chosen = (
        [section for section in SECTIONS if section in args.only]
        if args.only
        else [section for section in SECTIONS if optional.get(section, True)]
    )
    if "pipeline" in chosen and args.summary is None:
        parser.error("the pipeline section needs --summary")
    scripts = tempfile.TemporaryDirectory(prefix="bench-wrk-")
    wrk = Wrk(ensure_wrk(), Path(scripts.name))
    bundle = args.bundle or train_default_bundle()
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_average()
    targets = Targets()
    steps: dict[str, tuple[str, Callable[[], list[str]]]] = {
        "prediction": ("in-process latency", lambda: prediction(bundle, targets)),
        "http_load": ("HTTP load, side by side", lambda: http_load(bundle, wrk, args.rounds, args.seconds, targets)),
        "batch": ("batch endpoint", lambda: batch(bundle, wrk, args.rounds, args.seconds, targets)),
        "prediction_log": (
            "prediction log",
            lambda: prediction_log(bundle, wrk, args.rounds, args.seconds, targets),
        ),
        "profile": ("py-spy profile", lambda: profile(bundle, wrk, args.seconds)),
        "image": ("image", lambda: image(bundle, wrk, args.rounds, args.seconds, targets)),
        "pipeline": ("pipeline stages", lambda: pipeline(args.summary)),
        "nights": ("nights", lambda: nights(targets)),
    }
    sections: dict[str, list[str]] = {}
    failed: list[str] = []
    for section in chosen:
        name, step = steps[section]
        log(name)
        try:
            sections[section] = step()
        except (Exception, SystemExit) as exc:  # one broken section must not lose the others' results
            log(f"{name} failed: {exc}")
            failed.append(name)
            reason = (str(exc) or type(exc).__name__).splitlines()[0]
            sections[section] = [f"## {name[0].upper()}{name[1:]}: failed", "", f"`{reason}`"]
    command = ("python -m benchmarks.run " + " ".join(sys.argv[1:])).strip()
    scripts.cleanup()
    if args.only:
        for lines in sections.values():
            lines[1:1] = [
                "",
                f"*Run alone (`{command}`), started {started}, load average at the start {load_before}; the rest "
                "of this page comes from the run named at the top.*",
            ]
        text = merge(DOCS.read_text() if DOCS.exists() else "# Benchmarks\n", sections, targets)
    else:
        if not args.nights:
            targets.add("no-change night ≤ 10 % of a full run", "run with `--nights`", None)
        document = [
            "# Benchmarks",
            "",
            f"Written by `make benchmark` (`{command}`), started {started}.",
            "",
            f"Machine: {machine()}. Load average (1, 5, 15 min) at the start {load_before}, at the end "
            f"{load_average()}: the machine may be shared, so req/s and tail latencies move with other work; "
            "the server CPU per request does much less.",
            "",
            *targets.lines(),
        ]
        for section, lines in sections.items():
            start, end = markers(section)
            document += ["", start, *lines, end]
        text = "\n".join(document) + "\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text)
    sys.stdout.write(text)
    if failed:
        log(f"failed: {', '.join(failed)} (the others are in {DOCS})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
