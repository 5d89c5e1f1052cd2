"""Where the time goes under load: a py-spy profile of the serving process, summarised by component.

py-spy comes from PyPI through uv (`uv tool run py-spy@VERSION`, cached by uv, not in the project's lock) unless a
`py-spy` is on PATH. It samples without pausing the process (`--nonblocking`); idle samples (the event loop waiting
in epoll) are left out, so shares are of the time the process is busy. Time in C (socket writes, uvloop, msgspec,
numpy) shows on the Python line that called it.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import threading
from pathlib import Path

from benchmarks.load import Load, Target, Wrk

PY_SPY_VERSION = "0.4.3"

# (component, what a leaf frame's text contains), first match wins.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("uvicorn: sending the response (two socket writes, keep-alive timer)", ("RequestResponseCycle.send (",)),
    ("uvicorn + httptools: reading and parsing the request", ("data_received", "on_url", "on_header", "on_message")),
    ("uvicorn: the request cycle (task per request, scope, flow control)", ("uvicorn/",)),
    ("event loop (uvloop, asyncio)", ("asyncio/", "uvloop", "Runner.run", "(no Python frame")),
    ("metrics (prometheus-client)", ("prometheus_client/",)),
    ("classifier (folded linear model)", ("oncology_model/classifier.py",)),
    ("fast path: body, decode + validate (msgspec), encode, answer", ("oncology_model/fastpath.py",)),
    ("our other code", ("oncology_model/",)),
)


def py_spy() -> list[str]:
    """The py-spy command: on PATH, else run through uv from PyPI."""
    if found := shutil.which("py-spy"):
        return [found]
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise SystemExit("py-spy is missing: `uv tool install py-spy` or `pip install py-spy`")
    return [uv, "tool", "run", f"py-spy@{PY_SPY_VERSION}"]


def _server_pid(target: Target) -> int:
    """The process that serves: the target itself, or its only child (a supervisor's worker)."""
    children = Path(f"/proc/{target.pid}/task/{target.pid}/children").read_text().split()
    return int(children[0]) if len(children) == 1 else target.pid


def record(wrk: Wrk, target: Target, path: str, body: bytes, connections: int, seconds: int, out: Path) -> Load:
    """Profile `target` (raw collapsed stacks into `out`) while wrk loads it; wrk's result."""
    result: list[Load] = []
    thread = threading.Thread(target=lambda: result.append(wrk.run(target, path, body, connections, seconds + 2)))
    thread.start()
    command = [*py_spy(), "record", "--pid", str(_server_pid(target)), "--duration", str(seconds)]
    command += ["--rate", "250", "--nonblocking", "--format", "raw", "--output", str(out)]
    subprocess.run(command, capture_output=True, check=True)
    thread.join()
    return result[0]


def _component(leaf: str) -> str:
    return next((name for name, markers in COMPONENTS if any(m in leaf for m in markers)), "other")


def summarise(raw: Path, top: int = 10) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """Busy samples; the share of each component; the `top` leaf lines by own time."""
    leaves: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        leaves[stack.rsplit(";", 1)[-1] or "(no Python frame: native code only)"] += int(samples)
    total = sum(leaves.values()) or 1
    components: collections.Counter[str] = collections.Counter()
    for leaf, count in leaves.items():
        components[_component(leaf)] += count
    return (
        total,
        [(name, count / total) for name, count in components.most_common()],
        [(leaf, count / total) for leaf, count in leaves.most_common(top)],
    )
