"""Soak, run on demand (`make soak`): the serving container under steady load; results in docs/reliability.md.

The serving image is built with a trained model inside, the way `make benchmark --image` builds it (or an existing
image is named with `--image`), run as the cluster runs it (read-only root, its own CMD, one worker) with its port
published on 127.0.0.1, and loaded with wrk at 64 connections, valid single-tumor predictions, for 6 windows of
10 s back to back after a warm-up that is not counted. A new wrk process per window gives each window its own
latency histogram, so the first 10 s and the last 10 s are measured the same way (the 64 connections are opened
again every window, which soaks connection churn as well). Meanwhile `docker stats` samples the container's memory
about once a second.

Verdict: no error at all (non-2xx, socket errors) in any window or the warm-up; memory (median of the first
MEMORY_SPAN s after the warm-up vs median of the last MEMORY_SPAN s) grows by at most MAX_GROWTH; the last window's
p99 is at most P99_RATIO times the first window's plus P99_SLACK_MS; the container is still running, never restarted
or killed for memory. A failed criterion ends the command with exit status 1 and one line naming it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import (
    PROJECT_DIR,
    Load,
    Target,
    Wrk,
    _tree_cpu_seconds,
    container_server,
    ensure_wrk,
    log,
    wait_for_quiet,
)

DOCS = PROJECT_DIR / "docs" / "reliability.md"
START, END = "<!-- soak:start -->", "<!-- soak:end -->"
#: Where the section goes the first time: before this heading, else at the end of the file.
INSERT_BEFORE = "## Not yet tried"
IMAGE_TAG = "oncology-soak:latest"
PATH = "/v1/predictions"
CONNECTIONS, WINDOWS, WINDOW_SECONDS, WARMUP_SECONDS = 64, 6, 10, 5
#: Memory: the median of the samples in the first and in the last MEMORY_SPAN seconds of the load.
MEMORY_SPAN = 5.0
MAX_GROWTH = 0.10
#: p99 is steady when the last window's is at most P99_RATIO times the first's + P99_SLACK_MS (scheduler noise).
P99_RATIO, P99_SLACK_MS = 1.5, 1.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class MemorySample:
    """One reading of the container's memory."""

    at: float  # time.monotonic() when it arrived
    bytes: int


@dataclass(frozen=True)
class Window:
    """One wrk run of the soak: when it started (seconds after the warm-up), its result, docker-proxy's share."""

    started: float
    load: Load
    proxy_cores: float | None  # CPU docker-proxy used meanwhile, in cores; None when no docker-proxy carries it

    @property
    def others(self) -> float:
        """Cores the rest of the machine used meanwhile: neither the server, wrk nor docker-proxy."""
        return max(self.load.others - (self.proxy_cores or 0.0), 0.0)


@dataclass(frozen=True)
class Container:
    """What the container looked like after the load."""

    status: str
    restarts: int
    oom_killed: bool


def working_set(stats: Mapping[str, Any]) -> int | None:
    """The memory `docker stats` shows, from one stats sample: usage minus inactive file cache (cgroup v1 or v2).

    The docker CLI's own rule (`calculateMemUsageUnixNoCache`). None when the sample holds no usage (the container
    has stopped).
    """
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if usage is None:
        return None
    detail = memory.get("stats") or {}
    v1 = detail.get("total_inactive_file")
    if v1 is not None and v1 < usage:
        return int(usage - v1)
    v2 = detail.get("inactive_file", 0)
    return int(usage - v2) if v2 < usage else int(usage)


def median_between(samples: Sequence[MemorySample], start: float, end: float) -> float | None:
    """The median of the samples taken from `start` to `end` (inclusive), None when there is none."""
    values = [sample.bytes for sample in samples if start <= sample.at <= end]
    return statistics.median(values) if values else None


def last_before(samples: Sequence[MemorySample], moment: float) -> int | None:
    """The last sample taken at or before `moment`, None when there is none."""
    taken = [sample.bytes for sample in samples if sample.at <= moment]
    return taken[-1] if taken else None


def growth(start: float, end: float) -> float:
    """Relative growth from `start` to `end` (0.1 is 10 %)."""
    return end / start - 1


def memory_steady(start: float, end: float) -> bool:
    """Whether memory grew by at most MAX_GROWTH (to a billionth, so that exactly 10 % passes)."""
    return round(growth(start, end), 9) <= MAX_GROWTH


def p99_steady(first_ms: float, last_ms: float) -> bool:
    """Whether the last window's p99 stayed within P99_RATIO times the first's + P99_SLACK_MS (one-sided)."""
    return last_ms <= first_ms * P99_RATIO + P99_SLACK_MS


def failures(
    warmup: Window, windows: Sequence[Window], memory: tuple[float, float] | None, container: Container
) -> list[str]:
    """The criteria that failed, each as a short phrase; empty when the soak passed.

    A p99 that drifted names the other work on the machine in the first and the last window: on a shared machine
    that is often the cause, and the reader should see it next to the verdict.
    """
    reasons = []
    loads = [window.load for window in (warmup, *windows)]
    non_2xx, sockets = sum(load.non_2xx for load in loads), sum(load.socket_errors for load in loads)
    if non_2xx or sockets:
        reasons.append(f"{non_2xx + sockets} errors ({non_2xx} non-2xx, {sockets} socket errors)")
    if memory is None:
        reasons.append("no memory samples from docker stats at the start or the end of the load")
    elif not memory_steady(*memory):
        start, end = memory
        reasons.append(
            f"memory grew {growth(start, end):+.1%} ({start / MIB:.1f} → {end / MIB:.1f} MiB), more than "
            f"{MAX_GROWTH * 100:.0f} %"
        )
    first, last = windows[0].load.p99_ms, windows[-1].load.p99_ms
    if not p99_steady(first, last):
        reasons.append(
            f"p99 not steady: {first:.2f} ms in the first window, {last:.2f} ms in the last "
            f"(allowed {first * P99_RATIO + P99_SLACK_MS:.2f} ms; other work on the machine "
            f"{windows[0].others:.2f} → {windows[-1].others:.2f} cores)"
        )
    if container.status != "running" or container.restarts or container.oom_killed:
        reasons.append(
            f"the container is {container.status} ({container.restarts} restarts, OOM-killed: {container.oom_killed})"
        )
    return reasons


def rewrite_section(document: str, section: Sequence[str]) -> str:
    """`document` with the soak section (between START and END) replaced, or inserted the first time.

    Nothing outside the markers changes. The first time, the section goes before INSERT_BEFORE, else at the end.
    """
    block = "\n".join([START, *section, END])
    start, end = document.find(START), document.find(END)
    if start >= 0 and end > start:
        return document[:start] + block + document[end + len(END) :]
    if start >= 0 or end >= 0:
        raise ValueError(f"{DOCS.name}: the soak markers {START} and {END} are not a pair in that order")
    heading = document.find(f"\n{INSERT_BEFORE}\n")
    if heading >= 0:
        return document[: heading + 1] + block + "\n\n" + document[heading + 1 :]
    return document.rstrip("\n") + "\n\n" + block + "\n"


class MemoryWatch:
    """The container's memory as `docker stats` reports it (about one sample a second), read in a thread."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.samples: list[MemorySample] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="soak-docker-stats", daemon=True)

    def _read(self) -> None:
        import docker

        try:
            stream = docker.from_env(timeout=60).containers.get(self.container_id).stats(stream=True, decode=True)
            for stats in stream:
                if self._stop.is_set():
                    return
                value = working_set(stats)
                if value is not None:
                    self.samples.append(MemorySample(time.monotonic(), value))
        except Exception as exc:  # the stream ends with an error when the container goes away
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _proxy_pid(url: str) -> int | None:
    """The docker-proxy process that carries the published port of `url` on loopback, if one does."""
    port = url.rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            args[0].endswith(b"docker-proxy")
            and b"-host-port" in args
            and args[args.index(b"-host-port") + 1 :][:1] == [port.encode()]
        ):
            return int(entry.name)
    return None


def _window(wrk: Wrk, target: Target, body: bytes, seconds: int, proxy: int | None, started: float) -> Window:
    """One wrk run, with the CPU docker-proxy used meanwhile."""
    before = _tree_cpu_seconds(proxy) if proxy else 0.0
    load = wrk.run(target, PATH, body, CONNECTIONS, seconds)
    proxy_cores = (_tree_cpu_seconds(proxy) - before) / load.seconds if proxy else None
    return Window(started, load, proxy_cores)


@contextlib.contextmanager
def _image(client: Any, image: str | None, work: Path) -> Iterator[tuple[str, str]]:
    """The image to soak and how it came about: the one named, or IMAGE_TAG built with a trained model."""
    from benchmarks.run import build_service_image, train_default_bundle

    if image is not None:
        client.images.get(image)  # ImageNotFound names it
        yield image, "named with `--image`"
        return
    log("training the benchmark model on the real data")
    bundle = train_default_bundle()
    try:
        log(f"building {IMAGE_TAG} (layers of an earlier build are reused)")
        _, seconds, _ = build_service_image(client, bundle, IMAGE_TAG, work / "context", None)
        yield IMAGE_TAG, f"built in {seconds:.1f} s by `benchmarks.run.build_service_image`, kept for the next run"
    finally:
        shutil.rmtree(bundle.parent, ignore_errors=True)


def _state(client: Any, container_id: str) -> Container:
    state = client.containers.get(container_id).attrs
    return Container(
        status=str(state["State"]["Status"]),
        restarts=int(state.get("RestartCount", 0)),
        oom_killed=bool(state["State"].get("OOMKilled", False)),
    )


@dataclass(frozen=True)
class Soak:
    """Everything one soak measured."""

    image: str
    image_id: str
    model_version: str
    how: str
    warmup: Window
    windows: list[Window]
    samples: list[MemorySample]
    load_start: float
    load_end: float
    container: Container
    watch_error: str | None
    loads: tuple[str, str]  # load average (1, 5, 15 min) right before the warm-up and right after the last window

    @property
    def memory(self) -> tuple[float, float] | None:
        """The median memory of the first and of the last MEMORY_SPAN seconds of the load."""
        start = median_between(self.samples, self.load_start, self.load_start + MEMORY_SPAN)
        end = median_between(self.samples, self.load_end - MEMORY_SPAN, self.load_end)
        return None if start is None or end is None else (start, end)


def soak(client: Any, wrk: Wrk, image: str | None, work: Path) -> Soak:
    """Build (or take) the image, run it on loopback, warm it up, load it window by window, watch its memory."""
    from benchmarks.run import check_answers, load_average
    from oncology_model.datamodel import EXAMPLE_MALIGNANT

    body = json.dumps(EXAMPLE_MALIGNANT).encode()
    with _image(client, image, work) as (reference, how):
        labels = client.images.get(reference).labels or {}
        image_id = str(client.images.get(reference).id)
        with container_server("soak", client, reference, loopback=True) as target:
            check_answers([target], body)
            proxy = _proxy_pid(target.url)
            with MemoryWatch(target.container_id) as watch:
                wait_for_quiet()
                load_before = load_average()
                log(f"warm-up: {WARMUP_SECONDS} s at {CONNECTIONS} connections (not counted)")
                warmup = _window(wrk, target, body, WARMUP_SECONDS, proxy, -float(WARMUP_SECONDS))
                load_start = time.monotonic()
                windows = []
                for index in range(WINDOWS):
                    window = _window(wrk, target, body, WINDOW_SECONDS, proxy, time.monotonic() - load_start)
                    memory = last_before(watch.samples, time.monotonic())
                    log(
                        f"window {index + 1}/{WINDOWS}: {window.load.rps:,.0f} req/s, p99 {window.load.p99_ms:.2f} ms,"
                        f" errors {window.load.non_2xx + window.load.socket_errors}, memory "
                        + (f"{memory / MIB:.1f} MiB" if memory is not None else "?")
                    )
                    windows.append(window)
                load_end, load_after = time.monotonic(), load_average()
                time.sleep(1.2)  # the sample of the last second arrives
            container = _state(client, target.container_id)
    return Soak(
        image=reference,
        image_id=image_id,
        model_version=labels.get("org.oncology-mlops.model.version", "?"),
        how=how,
        warmup=warmup,
        windows=windows,
        samples=list(watch.samples),
        load_start=load_start,
        load_end=load_end,
        container=container,
        watch_error=watch.error,
        loads=(load_before, load_after),
    )


def section(result: Soak, reasons: Sequence[str], command: str, started: str, wall: float) -> list[str]:
    """The `## Soak` section of docs/reliability.md."""
    from benchmarks.run import machine

    windows = result.windows
    memory = result.memory
    loads_all = [window.load for window in (result.warmup, *windows)]
    requests = sum(load.requests for load in loads_all)
    errors = sum(load.non_2xx + load.socket_errors for load in loads_all)
    first, last = windows[0].load.p99_ms, windows[-1].load.p99_ms
    during = [s.bytes for s in result.samples if result.load_start <= s.at <= result.load_end]
    if memory is None:
        memory_text = "no samples" + (f" ({result.watch_error})" if result.watch_error else "")
    else:
        memory_text = (
            f"{memory[0] / MIB:.1f} MiB → {memory[1] / MIB:.1f} MiB, {growth(*memory):+.1%} "
            f"(peak {max(during) / MIB:.1f} MiB; {len(during)} samples)"
        )
    container = result.container
    verdict = "**passed**" if not reasons else "**failed**: " + "; ".join(reasons)
    met = {True: "**met**", False: "**not met**"}
    table = [
        "| window | from s | req/s | p50 ms | p99 ms | non-2xx | socket errors | server CPU µs/request "
        "| docker-proxy, cores | other work, cores | memory at its end, MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, window in [("warm-up", result.warmup), *((str(i), w) for i, w in enumerate(windows, start=1))]:
        load = window.load
        end = last_before(result.samples, result.load_start + window.started + load.seconds)
        table.append(
            f"| {name} | {window.started:.1f} | {load.rps:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} "
            f"| {load.non_2xx} | {load.socket_errors} | {load.cpu_us:.0f} "
            f"| {'–' if window.proxy_cores is None else f'{window.proxy_cores:.2f}'} | {window.others:.2f} "
            f"| {'?' if end is None else f'{end / MIB:.1f}'} |"
        )
    return [
        "## Soak",
        "",
        f"Written by `make soak` (`{command}`), started {started}; wall time {wall:.0f} s. Verdict: {verdict}.",
        "",
        f"Image `{result.image}` ({result.image_id[:19]}, model {result.model_version}; {result.how}), run as the "
        "cluster runs it (`docker run --read-only`, its own CMD: one uvicorn worker) with its port published on "
        f"127.0.0.1 (so docker-proxy carries the traffic). wrk posts one valid tumor to `POST {PATH}` "
        f"(`wrk -t1 -c{CONNECTIONS} -d{WINDOW_SECONDS}s --timeout 5s -s post.lua URL`, the Lua script of "
        f"`benchmarks/load.py`): a {WARMUP_SECONDS} s warm-up that the memory baseline and p99 comparison leave "
        f"out, then {WINDOWS} windows of {WINDOW_SECONDS} s back to back, a new wrk process each (its own latency "
        f"histogram; the {CONNECTIONS} connections are opened again every window). Memory is `docker stats`' "
        "figure (the cgroup's usage minus inactive file cache) from the stats stream, about one sample a second; "
        f"start and end are the medians of the first and the last {MEMORY_SPAN:.0f} s of the windows (a median "
        "keeps the image's 30-s HEALTHCHECK, a second Python process for a moment, out of both).",
        "",
        f"Machine: {machine()}. Load average (1, 5, 15 min) right before the warm-up {result.loads[0]}, right after "
        f"the last window {result.loads[1]}. Other work is the CPU the rest of the machine used meanwhile, in cores "
        f"(of {os.cpu_count()}): neither the server, wrk nor docker-proxy. The machine may be shared: p99 moves with "
        "other work, the server CPU per request much less.",
        "",
        "| criterion | measured | |",
        "|---|---|---|",
        f"| no errors (non-2xx, socket errors) in the warm-up and every window | {errors} in {requests:,} requests "
        f"| {met[errors == 0]} |",
        f"| memory growth ≤ {MAX_GROWTH * 100:.0f} % from after the warm-up to the end | {memory_text} "
        f"| {met[memory is not None and memory_steady(*memory)]} |",
        f"| p99 steady: last window ≤ {P99_RATIO} × first + {P99_SLACK_MS:.0f} ms | {first:.2f} ms → {last:.2f} ms "
        f"(allowed {first * P99_RATIO + P99_SLACK_MS:.2f}) | {met[p99_steady(first, last)]} |",
        f"| the container still running, never restarted or OOM-killed | {container.status}, {container.restarts} "
        f"restarts, OOM-killed: {'yes' if container.oom_killed else 'no'} "
        f"| {met[container.status == 'running' and not container.restarts and not container.oom_killed]} |",
        "",
        *table,
    ]


def main() -> int:
    """Soak the serving container, (re)write the Soak section of docs/reliability.md; 1 when a criterion fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help=f"soak this local image instead of building {IMAGE_TAG}")
    args = parser.parse_args()
    import docker

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SystemExit(f"soak: the Docker engine does not answer ({exc}): run `make provision` first") from None
    wrk = Wrk(ensure_wrk(), Path(tempfile.mkdtemp(prefix="soak-wrk-")))
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    started, clock = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.monotonic()
    try:
        result = soak(client, wrk, args.image, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(wrk.work, ignore_errors=True)
    reasons = failures(result.warmup, result.windows, result.memory, result.container)
    command = " ".join(["python -m benchmarks.soak", *sys.argv[1:]])
    lines = section(result, reasons, command, started, time.monotonic() - clock)
    DOCS.write_text(rewrite_section(DOCS.read_text(), lines))
    sys.stdout.write("\n".join(lines) + "\n")
    if reasons:
        sys.stderr.write(f"soak failed: {'; '.join(reasons)}\n")
        return 1
    log(f"passed; results in {DOCS.relative_to(PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
