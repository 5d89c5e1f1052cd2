"""HTTP load with wrk against real servers started side by side; results from wrk's own summary.

wrk (the Debian package) runs with one thread, a Lua script that posts one fixed JSON body, and a `done` hook that
prints its summary as JSON. Each measurement also reads the server's CPU time (its whole process tree, from /proc),
which stays meaningful when other work shares the machine, and how busy the machine was with other work.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
WRK_INSTALL = ["apt-get", "install", "-y", "wrk"]

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK-JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"non_2xx\\": %d, \\"socket_errors\\": %d, "
    .. "\\"p50_us\\": %d, \\"p99_us\\": %d}}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def log(text: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"[benchmark] {text}\n")
    sys.stderr.flush()


def ensure_wrk() -> str:
    """The wrk executable; installed with apt-get when missing and we are root on Debian."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: " + " ".join(WRK_INSTALL))
        if subprocess.run(WRK_INSTALL, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=True)
            subprocess.run(WRK_INSTALL, capture_output=True, check=True)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit(f"wrk is missing: install it as root with `{' '.join(WRK_INSTALL)}` (Debian package wrk)")
    return found


@dataclass(frozen=True)
class Load:
    """One wrk run against one server."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    cpu_us: float  # server CPU time per request, all its processes
    others: float  # cores busy with other work meanwhile (neither the server nor wrk)

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


@dataclass(frozen=True)
class Target:
    """A server under load: its name in the tables, its base URL, the process whose tree does the work."""

    name: str
    url: str
    pid: int
    container_id: str = ""  # a container's id, when the server runs in one


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def unreachable_endpoint() -> Iterator[str]:
    """An HTTP endpoint on loopback that behaves like an unreachable host: connecting to it times out.

    A listening socket whose accept queue is full (one connection, never accepted, with a backlog of 0): the kernel
    drops every further SYN, as a network that lost its route does, so a client waits out its connect timeout
    instead of being refused at once.
    """
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        with socket.create_connection(server.getsockname()):
            yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _wait_ready(url: str, alive: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except OSError:
            if not alive():
                raise SystemExit(f"the server at {url} exited before it was ready") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"the server at {url} was not ready within {timeout:.0f} s") from None
            time.sleep(0.2)


@contextlib.contextmanager
def process_server(name: str, command: Sequence[str], port: int, env: dict[str, str]) -> Iterator[Target]:
    """Start a server process, wait until /healthz answers, stop it (by its PID) afterwards."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            list(command), cwd=PROJECT_DIR, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_ready(url, lambda: process.poll() is None)
            except SystemExit as failure:
                output.seek(0)
                raise SystemExit(f"{name}: {failure}\n{output.read().decode(errors='replace')[-3000:]}") from None
            yield Target(name, url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def container_server(name: str, client: Any, image: str, *, loopback: bool = False) -> Iterator[Target]:
    """Run the image as the cluster would (read-only root, its own CMD); reach it on its bridge address.

    With `loopback`, its port is published on 127.0.0.1 only (a free port) and reached there, through docker-proxy.
    """
    port = free_port() if loopback else 0
    ports = {"8000/tcp": ("127.0.0.1", port)} if loopback else None
    container = client.containers.run(image, detach=True, read_only=True, ports=ports)
    try:
        container.reload()
        bridge = f"http://{container.attrs['NetworkSettings']['IPAddress']}:8000"
        url = f"http://127.0.0.1:{port}" if loopback else bridge

        def alive() -> bool:
            container.reload()
            return bool(container.status == "running")

        _wait_ready(url, alive)
        yield Target(name, url, int(container.attrs["State"]["Pid"]), str(container.id))
    finally:
        container.remove(force=True)


def _tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree = {root}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU time the whole machine spent busy since boot (every core), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_seconds() -> float:
    """CPU time of the child processes this process has waited for (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Wrk:
    """wrk with one Lua script per request body."""

    def __init__(self, executable: str, work: Path) -> None:
        self.executable = executable
        self.work = work
        self._scripts: dict[bytes, Path] = {}

    def script(self, body: bytes) -> Path:
        """The Lua script that posts `body`."""
        if body not in self._scripts:
            path = self.work / f"post-{len(self._scripts)}.lua"
            path.write_text(_LUA.format(body=body.decode()))
            self._scripts[body] = path
        return self._scripts[body]

    def command(self, url: str, body: bytes, connections: int, seconds: int) -> list[str]:
        """The wrk command line."""
        script = str(self.script(body))
        return [self.executable, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", script, url]

    def run(self, target: Target, path: str, body: bytes, connections: int, seconds: int) -> Load:
        """Load `target` for `seconds`; wrk's summary, the server's CPU time per request, the other work."""
        server, machine, client = _tree_cpu_seconds(target.pid), _busy_seconds(), _children_seconds()
        done = subprocess.run(
            self.command(target.url + path, body, connections, seconds), capture_output=True, text=True, check=True
        )
        server = _tree_cpu_seconds(target.pid) - server
        others = _busy_seconds() - machine - server - (_children_seconds() - client)
        line = next((line for line in done.stdout.splitlines() if line.startswith("WRK-JSON ")), None)
        if line is None:
            raise SystemExit(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
        summary = json.loads(line.removeprefix("WRK-JSON "))
        requests = max(int(summary["requests"]), 1)
        duration = summary["duration_us"] / 1e6
        return Load(
            requests=requests,
            seconds=duration,
            p50_ms=summary["p50_us"] / 1e3,
            p99_ms=summary["p99_us"] / 1e3,
            non_2xx=int(summary["non_2xx"]),
            socket_errors=int(summary["socket_errors"]),
            cpu_us=server / requests * 1e6,
            others=max(others, 0.0) / duration,
        )


Results = dict[tuple[str, int], list[Load]]
#: Before each run, wait (up to QUIET_WAIT seconds) until the rest of the machine uses fewer than QUIET_CORES.
QUIET_CORES, QUIET_WAIT = 0.5, 30.0


def wait_for_quiet() -> None:
    """Wait until other work on the machine has calmed down (a shared machine), or QUIET_WAIT has passed."""
    deadline = time.monotonic() + QUIET_WAIT
    while True:
        before = _busy_seconds()
        time.sleep(1)
        busy = _busy_seconds() - before
        if busy < QUIET_CORES or time.monotonic() > deadline:
            return
        log(f"waiting for a quieter machine: other work uses {busy:.1f} cores")


def side_by_side(
    wrk: Wrk, targets: Sequence[Target], path: str, body: bytes, levels: Sequence[int], rounds: int, seconds: int
) -> Results:
    """Each level, each round, each target in turn (the order flips every round); after a short warm-up each."""
    for target in targets:
        wrk.run(target, path, body, max(levels), 2)
    results: Results = {(target.name, level): [] for target in targets for level in levels}
    for round_ in range(rounds):
        for level in levels:
            for target in targets if round_ % 2 == 0 else list(reversed(targets)):
                wait_for_quiet()
                load = wrk.run(target, path, body, level, seconds)
                log(f"round {round_ + 1}, {level} conn., {target.name}: {load.rps:,.0f} req/s, p99 {load.p99_ms} ms")
                results[(target.name, level)].append(load)
    return results


def at_once(
    wrk: Wrk, targets: Sequence[Target], path: str, body: bytes, connections: int, rounds: int, seconds: int
) -> dict[str, list[Load]]:
    """Each round loads every target at the same time, one wrk each. On a shared machine one core can run at half
    speed for seconds; a round that runs the targets back to back then compares one on a fast core with one on a
    slow one, while targets loaded at once share whatever the cores give (the scheduler spreads them over both).
    Their CPU shares are equal, so within a round their req/s compare as their CPU time per request does."""
    from concurrent.futures import ThreadPoolExecutor

    results: dict[str, list[Load]] = {target.name: [] for target in targets}
    with ThreadPoolExecutor(len(targets)) as pool:
        for round_ in range(rounds):
            wait_for_quiet()
            loads = list(pool.map(lambda target: wrk.run(target, path, body, connections, seconds), targets))
            for target, load in zip(targets, loads, strict=True):
                results[target.name].append(load)
            log(f"round {round_ + 1}, all at once: " + ", ".join(f"{load.rps:,.0f} req/s" for load in loads))
    return results


@dataclass(frozen=True)
class PairedRatio:
    """The median of the rounds' ratios of req/s (two servers loaded in the same round), with a distribution-free
    interval for that median: order statistics (the sign test's), covering it with probability `confidence`."""

    median: float
    low: float
    high: float
    confidence: float

    @classmethod
    def of(cls, loads: Sequence[Load], baselines: Sequence[Load], level: float = 0.95) -> PairedRatio:
        """The rounds' ratios; the interval is the narrowest pair of order statistics covering at least `level`
        (with too few rounds for `level`: the smallest and largest ratio, and their own coverage)."""
        from scipy.stats import binom

        ratios = sorted(load.rps / base.rps for load, base in zip(loads, baselines, strict=True))
        n = len(ratios)
        # the k-th smallest and k-th largest ratio cover the median with probability 1 - 2 P(Binomial(n, 1/2) < k)
        k = max([1, *(k for k in range(1, n // 2 + 1) if 1 - 2 * binom.cdf(k - 1, n, 0.5) >= level)])
        return cls(statistics.median(ratios), ratios[k - 1], ratios[n - k], float(1 - 2 * binom.cdf(k - 1, n, 0.5)))

    def text(self) -> str:
        """E.g. `93% (97.9% interval: 79% to 100%)`."""
        return f"{self.median:.0%} ({self.confidence:.1%} interval: {self.low:.0%} to {self.high:.0%})"


@dataclass(frozen=True)
class Summary:
    """The median over rounds of one server at one level; errors are summed over the rounds."""

    rps: float
    rounds_rps: list[float]
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    cpu_us: float
    others: float

    @classmethod
    def of(cls, loads: Sequence[Load]) -> Summary:
        """Medians of the rounds."""
        return cls(
            rps=statistics.median(load.rps for load in loads),
            rounds_rps=[load.rps for load in loads],
            p50_ms=statistics.median(load.p50_ms for load in loads),
            p99_ms=statistics.median(load.p99_ms for load in loads),
            non_2xx=sum(load.non_2xx for load in loads),
            socket_errors=sum(load.socket_errors for load in loads),
            cpu_us=statistics.median(load.cpu_us for load in loads),
            others=statistics.median(load.others for load in loads),
        )
