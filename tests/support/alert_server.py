"""A real Prefect server (`prefect server start`: triggers, actions, late runs) with the alerts applied, and a
webhook receiver standing in for Slack/Teams (the `alert_server` fixture of tests/alerts)."""

from __future__ import annotations

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.utilities.asyncutils import run_coro_as_sync

from standins.webhook import read_notifications, webhook_receiver
from tests.support.paths import PROJECT_DIR

#: 10.8 s: the shortest window Prefect's proactive triggers take is 10 s.
DEADLINE_HOURS = 0.003
SERVER_STARTUP_SECONDS = 90
#: Flow runs' heartbeat interval, as `make server` gives its worker: the alerts' dead-run window is three of them.
HEARTBEAT_SECONDS = 30
Message = dict[str, Any]


@dataclass(frozen=True)
class AlertServer:
    """The server's API URL, its UI base URL, the receiver's URL and file, and a clean environment for
    subprocesses (no ONCOLOGY_* variables of the caller)."""

    api_url: str
    ui_url: str
    webhook_url: str
    notifications: Path
    env: dict[str, str]
    work_dir: Path

    def run_alerts(self, **settings: str) -> subprocess.CompletedProcess[str]:
        """`python -m alerts` against this server, with these ONCOLOGY_* settings (outside the project dir, so
        that no `.env` is read)."""
        env = self.env | {f"ONCOLOGY_{key.upper()}": value for key, value in settings.items()}
        return subprocess.run(
            [sys.executable, "-m", "alerts"], env=env, cwd=self.work_dir, capture_output=True, text=True, timeout=120
        )

    def default_alerts(self) -> subprocess.CompletedProcess[str]:
        """The alerts as the tests expect them: to the receiver, nightly deadline DEADLINE_HOURS."""
        return self.run_alerts(alert_webhook_url=self.webhook_url, nightly_deadline_hours=str(DEADLINE_HOURS))

    def messages(self, where: Callable[[str], bool] = lambda text: True) -> list[Message]:
        """The notifications received so far whose text satisfies `where`."""
        return [m for m in read_notifications(self.notifications) if where(message_text(m))]

    def wait_for(self, where: Callable[[str], bool], seconds: float = 60) -> list[Message]:
        """Poll (at most `seconds`) until a notification satisfies `where`; fail if none comes."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if found := self.messages(where):
                return found
            time.sleep(0.5)
        pytest.fail(f"no notification matched within {seconds} s; received: {self.messages()}")


def message_text(message: Message) -> str:
    """The text a notification carries (`{"text": ...}`, the body the alert block sends), else the whole line."""
    body = message.get("json")
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        return str(body["text"])
    return json.dumps(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), SIGKILL after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _drain_workers() -> None:
    """Send what Prefect's event and log workers still hold, and stop them: they are per-process singletons bound
    to the server they started with, and the tests after these use another server (as prefect_test_harness does)."""

    async def drain() -> None:
        for result in (APILogWorker.drain_all(), EventsWorker.drain_all()):
            if inspect.isawaitable(result):
                await result

    run_coro_as_sync(drain())


@contextmanager
def prefect_alert_server(root: Path) -> Iterator[AlertServer]:
    """`prefect server start` on a free port with its own PREFECT_HOME under `root`, the receiver, and the alerts
    applied; this process's Prefect settings point at it until the block ends. Fails (never skips) when the server
    does not come up or the alerts cannot be applied."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith("ONCOLOGY_")}
    env |= {
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": api_url,  # the server derives the UI URL of its notifications from it
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PYTHONPATH": str(PROJECT_DIR),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    }
    log = root / "server.log"
    with webhook_receiver(root / "notifications.jsonl") as webhook_url, log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + SERVER_STARTUP_SECONDS
            while not _healthy(api_url):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Prefect server did not come up; its log:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            running = AlertServer(
                api_url, api_url.removesuffix("/api"), webhook_url, root / "notifications.jsonl", env, root
            )
            applied = running.default_alerts()
            if applied.returncode != 0:
                pytest.fail(f"python -m alerts failed ({applied.returncode}):\n{applied.stdout}{applied.stderr}")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PREFECT_HOME", env["PREFECT_HOME"])
                updates = {PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}
                with temporary_settings(updates=updates):
                    try:
                        yield running
                    finally:
                        _drain_workers()
        finally:
            _stop(server)
