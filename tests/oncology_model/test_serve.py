"""`python -m oncology_model serve` as a real process: uvloop and httptools, metrics, and a log line per request only
when asked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from oncology_model.datamodel import EXAMPLE_MALIGNANT

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(bundle: Path, env: dict[str, str]) -> str:
    """Start the server, predict twice, read /metrics, stop it; everything it logged."""
    port = _free_port()
    command = [sys.executable, "-m", "oncology_model", "serve", "--model", str(bundle), "--port", str(port)]
    environment = {**os.environ, "ONCOLOGY_ACCESS_LOG": "", **env, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, cwd=PROJECT_DIR, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=2)
                break
            except OSError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not get ready"
                time.sleep(0.2)
        for _ in range(2):
            request = urllib.request.Request(
                f"{base}/v1/predictions",
                data=json.dumps(EXAMPLE_MALIGNANT).encode(),
                headers={"content-type": "application/json"},
            )
            assert json.load(urllib.request.urlopen(request, timeout=5))["prediction"] == "malignant"
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert 'oncology_http_requests_total{method="POST",route="/v1/predictions",status="200"} 2.0' in metrics
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    return output


@pytest.mark.parametrize(("env", "logged"), [({}, False), ({"ONCOLOGY_ACCESS_LOG": "true"}, True)])
def test_one_log_line_per_request_only_when_asked(model_bundle_dir: Path, env: dict[str, str], logged: bool) -> None:
    output = _serve(model_bundle_dir, env)
    assert "Application startup complete" in output
    assert ('"POST /v1/predictions HTTP/1.1" 200' in output) is logged, output
    assert output.count("/v1/predictions") == (2 if logged else 0)


def test_uvicorn_runs_on_uvloop_and_httptools() -> None:
    """What `uvicorn.run` picks by default (loop="auto", http="auto") with the locked uvicorn[standard]."""
    import uvloop
    from uvicorn.loops.auto import auto_loop_factory
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert AutoHTTPProtocol is HttpToolsProtocol
    loop = auto_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
