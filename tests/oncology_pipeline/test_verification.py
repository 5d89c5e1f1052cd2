"""The deploy verification through the Service proxy of the Kubernetes stand-in, to a small HTTP double of the
service: the golden set goes with a verification request id, and the answer must carry it back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT
from oncology_model.predictionlog import CASE_ID, REQUEST_ID, case_id, request_id
from oncology_pipeline.errors import VerificationFailed
from oncology_pipeline.kubeapi import connect_kubeconfig
from oncology_pipeline.predictionlog import is_verification
from oncology_pipeline.verification import verify_service
from standins.kube import KubeStandIn, ScriptedRuntime

NS = "oncology"
VERSION = "20261202T020000Z-9b1e77a0"
IMAGE = "registry.local/oncology-webservice@sha256:" + "b" * 64
GOLDEN = [(dict(EXAMPLE_BENIGN), 0.1), (dict(EXAMPLE_MALIGNANT), 0.9), (dict(EXAMPLE_BENIGN), 0.1)]


class FakeService(ThreadingHTTPServer):
    """Answers `GET /v1/model` and `POST /v1/predictions/batch` as the service does for `GOLDEN` and keeps each
    `X-Request-ID` it got; with `echo` False it answers with an id of its own, as when the header is lost."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.daemon_threads = True
        self.echo = True
        self.request_ids: list[str | None] = []


class _Handler(BaseHTTPRequestHandler):
    server: FakeService

    def do_GET(self) -> None:
        self._send({"model_version": VERSION})

    def do_POST(self) -> None:
        given = self.headers.get("X-Request-ID")
        self.server.request_ids.append(given)
        tumors = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["tumors"]
        answers = [
            {"model_version": VERSION, "probability_malignant": 0.9 if t == EXAMPLE_MALIGNANT else 0.1} for t in tumors
        ]
        header = given.encode() if given is not None and self.server.echo else None
        self._send({"predictions": answers}, request_id(header))

    def _send(self, body: Any, rid: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if rid is not None:
            self.send_header("X-Request-ID", rid)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""


@dataclass
class ToService(ScriptedRuntime):
    """Scripted containers whose every port is answered at `target` while they run."""

    target: tuple[str, int] = field(default=("127.0.0.1", 0))

    def address(self, container_id: str, port: int) -> tuple[str, int] | None:
        return self.target if self.exit_code(container_id) is None else None


@pytest.fixture
def service() -> Iterator[FakeService]:
    server = FakeService()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(service: FakeService, tmp_path: Path) -> Iterator[ApiClient]:
    """A client of a stand-in whose Service `web` sends every request to the fake service."""
    runtime = ToService(target=("127.0.0.1", service.server_address[1]))
    with KubeStandIn("verification-token", runtime=runtime, step_interval=0.02) as standin:
        labels = {"app": "web"}
        container = {"name": "web", "image": IMAGE, "ports": [{"name": "http", "containerPort": 8000}]}
        standin.add_manifest(
            {
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
            },
            namespace=NS,
        )
        standin.add_manifest(
            {
                "metadata": {"name": "web", "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
                },
            },
            namespace=NS,
            timeout=10,
        )
        yield connect_kubeconfig(str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")))


def test_the_golden_set_goes_with_a_verification_request_id_that_comes_back(
    api: ApiClient, service: FakeService
) -> None:
    summary = verify_service(api, NS, "web:http", VERSION, GOLDEN, request_timeout=5)

    assert summary == f"service web:http serves model {VERSION}; 3 golden cases match (max difference 0.0e+00)"
    [sent] = service.request_ids
    assert sent is not None and sent.startswith(f"verify-{VERSION}-") and len(sent) == len(f"verify-{VERSION}-") + 8
    assert REQUEST_ID.fullmatch(sent)  # the service keeps it: it logs the rows as <id>/<row>
    assert CASE_ID.fullmatch(case_id(sent, 2)) and is_verification(case_id(sent, 2))

    verify_service(api, NS, "web:http", VERSION, GOLDEN, request_timeout=5)
    assert len(set(service.request_ids)) == 2  # a new id for each verification


def test_an_answer_without_the_request_id_fails_the_verification(api: ApiClient, service: FakeService) -> None:
    service.echo = False

    with pytest.raises(
        VerificationFailed, match=r"answered the golden set with X-Request-ID '[0-9a-f]{32}', not 'verify-"
    ):
        verify_service(api, NS, "web:http", VERSION, GOLDEN, request_timeout=5)

    assert len(service.request_ids) == 1  # not asked again: the answer came, without the id
