"""A webhook receiver STAND-IN (for Slack, Teams or any alert endpoint): every POST body becomes one JSON line.

Each line holds `received_at` (UTC, ISO 8601), `path`, and `json` (the parsed body) or `text` (when the body is
not JSON). `make server` points the alert automations here and writes `.work/server/notifications.jsonl`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _record(body: bytes, path: str) -> dict[str, Any]:
    """One line of the notifications file."""
    line: dict[str, Any] = {"received_at": datetime.now(UTC).isoformat(), "path": path}
    text = body.decode("utf-8", errors="replace")
    try:
        line["json"] = json.loads(text)
    except ValueError:
        line["text"] = text
    return line


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.append(_record(body, self.path))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # the file is the log
        return


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, file: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.file = file
        self.lock = threading.Lock()

    def append(self, line: dict[str, Any]) -> None:
        with self.lock, self.file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")


@contextmanager
def webhook_receiver(file: Path) -> Iterator[str]:
    """Receive webhooks on 127.0.0.1 (a free port) until exit, appending them to `file`; yields the URL."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.touch()
    server = _Receiver(file)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def read_notifications(file: Path) -> list[dict[str, Any]]:
    """Every line the receiver wrote, parsed."""
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
