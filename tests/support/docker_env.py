"""The real Docker engine and local registry for tests: fail loudly (never skip) when they are missing."""

from __future__ import annotations

import base64
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from oncology_pipeline.image import ImageInfo

PROVISION_HINT = "run `scripts/provision.sh` (as root) to install and start the Docker engine and the registry"
#: The authenticated registry started by scripts/provision.sh.
REGISTRY_ADDRESS = os.environ.get("ONCOLOGY_TEST_REGISTRY", "127.0.0.1:5000")
#: Base image made by scripts/provision.sh (Debian bookworm, python3 3.11).
BASE_IMAGE = os.environ.get("ONCOLOGY_TEST_BASE_IMAGE", "oncology-base:bookworm")
#: What moto's ECR token decodes to (default account); the registry's htpasswd holds this login.
MOTO_ECR_USER, MOTO_ECR_PASSWORD = "AWS", "123456789012-auth-token"
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class BuiltImage:
    """The session's serving image, the secret build arg it was built with, and its build log."""

    info: ImageInfo
    secret: str
    build_log: list[str]


def docker_client() -> Any:
    """A client of a Docker engine that answers, or a test failure that says how to start one."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"Docker engine unreachable ({exc}); {PROVISION_HINT}", pytrace=False)
    return client


def registry_address() -> str:
    """The local registry's address, after checking that it answers and demands a login (401)."""
    url = f"http://{REGISTRY_ADDRESS}/v2/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except OSError as exc:
        pytest.fail(f"registry {REGISTRY_ADDRESS} unreachable ({exc}); {PROVISION_HINT}", pytrace=False)
    if status != 401:
        pytest.fail(
            f"registry {REGISTRY_ADDRESS} answered GET /v2/ with {status}, not 401: it must demand a login; "
            + PROVISION_HINT,
            pytrace=False,
        )
    return REGISTRY_ADDRESS


def require_image(client: Any, name: str) -> None:
    """Fail unless image `name` exists locally."""
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {name} is missing; {PROVISION_HINT}", pytrace=False)


def registry_request(
    path: str, username: str, password: str, accept: str | None = None, method: str = "GET"
) -> tuple[int, dict[str, str]]:
    """Call a registry API path with basic auth; returns the status and the response headers."""
    request = urllib.request.Request(f"http://{REGISTRY_ADDRESS}{path}", method=method)
    token = f"{username}:{password}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers.items())


def builder_images_with(client: Any, text: str) -> list[str]:
    """Ids of untagged leaf images (left by multi-stage builds) whose history mentions `text`."""
    found = []
    for image in client.images.list(filters={"dangling": True}):
        if text in repr(client.api.history(image.id)):
            found.append(str(image.id))
    return found


def _files_of(archive: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
    """Name and content of every regular file in a tar archive."""
    for member in archive:
        if member.isfile():
            handle = archive.extractfile(member)
            if handle is not None:
                yield member.name, handle.read()


def image_files(client: Any, image: str) -> Iterator[tuple[str, bytes]]:
    """Every file of `docker save IMAGE`: its metadata files and each file of every layer tar."""
    with tempfile.TemporaryDirectory(prefix="oncology-save-") as tmp:
        saved = Path(tmp) / "image.tar"
        with saved.open("wb") as out:
            for chunk in client.images.get(image).save(chunk_size=4 * 1024 * 1024):
                out.write(chunk)
        with tarfile.open(saved) as outer:
            for name, content in _files_of(outer):
                yield name, content
                if name.endswith(".tar") or name.startswith("blobs/"):
                    try:
                        with tarfile.open(fileobj=io.BytesIO(content)) as layer:
                            for inner, data in _files_of(layer):
                                yield f"{name}:{inner}", data
                    except tarfile.ReadError:
                        continue  # a config or manifest blob, already searched as a whole


def publish_overrides(base: dict[str, Any], moto_endpoint: str, registry: str, work: Path, repo: str) -> dict[str, Any]:
    """Settings for the publish flow: ECR from moto, the registry at `registry`, the provisioned base image."""
    return {
        **base,
        "aws_endpoint_url": moto_endpoint,
        "registry_address": registry,
        "base_image": BASE_IMAGE,
        "ecr_repository": repo,
        "work_dir": str(work),
    }
