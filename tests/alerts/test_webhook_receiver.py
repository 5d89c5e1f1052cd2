"""The webhook receiver stand-in (standins/webhook.py): one JSON line per POST."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from pathlib import Path

from standins.webhook import read_notifications, webhook_receiver


def _post(url: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def test_every_post_becomes_one_json_line(tmp_path: Path) -> None:
    file = tmp_path / "server" / "notifications.jsonl"
    with webhook_receiver(file) as url:
        assert url.startswith("http://127.0.0.1:")
        assert _post(url + "hooks/a", json.dumps({"text": "line 1\nline 2"}).encode(), "application/json") == 200
        assert _post(url, b"plain words", "text/plain") == 200

    first, second = read_notifications(file)
    assert len(file.read_text().splitlines()) == 2
    assert first["path"] == "/hooks/a" and first["json"] == {"text": "line 1\nline 2"}
    assert second["path"] == "/" and second["text"] == "plain words" and "json" not in second
    assert datetime.fromisoformat(first["received_at"]).tzinfo is not None
