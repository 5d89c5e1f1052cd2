"""Secrets canaries: canary values planted in the environment, and every sink a run writes to searched for them
(each file of each image layer, the image's history and configuration, the builder stage's images, Prefect logs,
artifacts, flow and task runs read through the client, the Prefect database and storage files, the release record,
every S3 object version, local files).

The registry password cannot be a canary: ECR issues it (moto: always `AWS:123456789012-auth-token`) and the
local registry's htpasswd accepts only that one, so the sinks are searched for that known value instead."""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL

from tests.support import docker_env

INDEX_USER = "ci-bot"
#: What moto's ECR hands out and the local registry accepts: searched for as known values.
REGISTRY_SECRETS = {
    "registry password": docker_env.MOTO_ECR_PASSWORD.encode(),
    "ECR token": base64.b64encode(f"{docker_env.MOTO_ECR_USER}:{docker_env.MOTO_ECR_PASSWORD}".encode()),
}


@dataclass
class PrivateIndex:
    """A package index that has no packages (404) and records the Authorization headers it is sent."""

    url: str = ""
    authorizations: set[str] = field(default_factory=set)


@contextlib.contextmanager
def private_index_server() -> Iterator[PrivateIndex]:
    """A local private index behind basic auth; pip asks it, then PyPI, for every wheel."""
    index = PrivateIndex()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            index.authorizations.add(self.headers.get("Authorization", ""))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    index.url = f"127.0.0.1:{server.server_address[1]}"
    yield index
    server.shutdown()
    server.server_close()


def plant_canaries(monkeypatch: pytest.MonkeyPatch, index_url: str) -> dict[str, bytes]:
    """Canary AWS keys, index credential and webhook URL in the environment; returns what to search for."""
    canary = secrets.token_hex(10)
    values = {
        "AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}",
        "AWS_SECRET_ACCESS_KEY": f"canary-aws-secret-{canary}",
        "ONCOLOGY_ALERT_WEBHOOK_URL": f"https://hooks.example.invalid/services/canary-hook-{canary}",
    }
    index_password = f"canary-index-{canary}"
    values["PIP_EXTRA_INDEX_URL"] = f"http://{INDEX_USER}:{index_password}@{index_url}/simple/"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {
        "AWS access key id": values["AWS_ACCESS_KEY_ID"].encode(),
        "AWS secret key": values["AWS_SECRET_ACCESS_KEY"].encode(),
        "webhook URL token": f"canary-hook-{canary}".encode(),
        "index password": index_password.encode(),
        "index basic auth": base64.b64encode(f"{INDEX_USER}:{index_password}".encode()),
    }


class Sinks:
    """Searches every blob it is shown for every secret, and for a control value that must turn up in every kind
    of sink (so a search that reads nothing cannot pass); remembers where each was found."""

    def __init__(self, secrets: dict[str, bytes], control: str) -> None:
        self.secrets = secrets
        self.control = control.encode()
        self.found: list[str] = []
        self.searched: Counter[str] = Counter()
        self.controlled: set[str] = set()

    def search(self, kind: str, where: str, data: bytes | str) -> None:
        blob = data.encode(errors="surrogateescape") if isinstance(data, str) else data
        self.searched[kind] += 1
        self.found += [f"{name} in {kind} {where}" for name, value in self.secrets.items() if value in blob]
        if self.control in blob:
            self.controlled.add(kind)

    def search_files(self, kind: str, root: Path) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.search(kind, str(path), path.read_bytes())


def flow_run_tree(root: UUID) -> list[FlowRun]:
    """The flow run and all its subflow runs."""
    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(root)]
        for run in runs:  # grows while it is walked
            runs += client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
            )
    return runs


def search_prefect(sinks: Sinks, runs: list[FlowRun]) -> None:
    """Logs, artifacts, flow runs and task runs as the API gives them, then the server's database and storage."""
    APILogWorker.drain_all(timeout=10)  # logs still on their way to the API
    ids = [run.id for run in runs]
    with get_client(sync_client=True) as client:
        for run in runs:
            sinks.search("flow run", run.name, run.model_dump_json())
        for task_run in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))):
            sinks.search("task run", task_run.name, task_run.model_dump_json())
        offset = 0
        while logs := client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=offset):
            for log in logs:
                sinks.search("log", f"{log.name}: {log.message[:60]}", log.message)
            offset += len(logs)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
        for artifact in artifacts:
            sinks.search("artifact", artifact.key or artifact.type or "", artifact.model_dump_json())
    database = Path(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).split(":///", 1)[1])
    for path in (database, database.with_name(database.name + "-wal")):
        if path.exists():
            sinks.search("Prefect database", path.name, path.read_bytes())
    sinks.search_files("Prefect home", Path(PREFECT_HOME.value()))


def search_s3(sinks: Sinks, s3: Any, buckets: list[str]) -> None:
    """Every version of every object: body and user metadata."""
    for bucket in buckets:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for version in page.get("Versions", []):
                got = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
                where = f"s3://{bucket}/{version['Key']}"
                sinks.search("S3 object", where, got["Body"].read() + repr(got.get("Metadata")).encode())


def search_image(sinks: Sinks, client: Any, reference: str) -> None:
    """Each file of each layer, the configuration and the history; and the builder stage's leftover images."""
    image = client.images.get(reference)
    sinks.search("image config", reference, repr(image.attrs))
    sinks.search("image history", reference, repr(client.api.history(image.id)))
    for name, data in docker_env.image_files(client, image.id):
        sinks.search("image file", name, data)
    for name, value in sinks.secrets.items():
        for leftover in docker_env.builder_images_with(client, value.decode()):
            sinks.found.append(f"{name} in the history of builder image {leftover}")
