"""Build the serving image from a prepared build context (no Prefect here).

A classic docker build (the SDK's), its output streamed line by line into a log. Given a time limit, a build
that outlasts it is stopped by the daemon and leaves the tag as it was.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests
import urllib3

from oncology_pipeline.errors import BuildFailed, TransientError

#: Label holding the model version (the OCI labels hold the image version and the git revision).
MODEL_VERSION_LABEL = "org.oncology-mlops.model.version"
_LOG_TAIL = 30


@dataclass(frozen=True)
class ImageInfo:
    """A built image."""

    id: str
    tag: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)


def _image_id(client: docker.DockerClient, reference: str) -> str | None:
    """The id of the local image `reference` names, or None."""
    try:
        return str(client.images.get(reference).id)
    except docker.errors.ImageNotFound:
        return None


@contextlib.contextmanager
def _responses(client: docker.DockerClient) -> Iterator[list[requests.Response]]:
    """The HTTP responses `client` receives in the block (a requests response hook), closed when it ends.

    Closing a build's streaming response is how a client stops a classic build: the daemon cancels it,
    killing and removing the container of the running step.
    """
    received: list[requests.Response] = []

    def keep(response: requests.Response, **_: Any) -> None:
        received.append(response)

    client.api.hooks["response"].append(keep)
    try:
        yield received
    finally:
        client.api.hooks["response"].remove(keep)
        for response in received:
            response.close()


def _until(
    client: docker.DockerClient, lines: Iterable[dict[str, Any]], responses: list[requests.Response], deadline: float
) -> Iterator[dict[str, Any]]:
    """The build's lines while time remains; each read may block only until `deadline`, then TimeoutError.

    A build step can be silent for minutes (`RUN` without output), so a deadline checked between lines is not
    enough: the socket's read timeout is set to the time left before each read, as the docker SDK itself
    adjusts it for attach streams (`APIClient._get_raw_response_socket`, `_disable_socket_timeout`).
    """
    sockets: list[Any] = []
    for response in responses:
        raw = client.api._get_raw_response_socket(response)
        sockets += [s for s in (raw, getattr(raw, "_sock", None)) if hasattr(s, "settimeout")]
    iterator = iter(lines)
    while (remaining := deadline - time.monotonic()) > 0:
        for sock in sockets:
            sock.settimeout(remaining)
        line = next(iterator, None)
        if line is None:
            return
        yield line
    raise TimeoutError


def _untag_if_changed(client: docker.DockerClient, tag: str, previous: str | None) -> None:
    """Undo a tag a stopped build may have set at its very end: drop it, and give it back to its former image."""
    if _image_id(client, tag) in (None, previous):
        return
    client.images.remove(tag)
    if previous is not None:
        client.api.tag(previous, *docker.utils.parse_repository_tag(tag))


def build_image(
    client: docker.DockerClient,
    context_dir: Path,
    tag: str,
    build_args: Mapping[str, str],
    log: Callable[[str], None],
    *,
    nocache: bool = False,
    timeout: float | None = None,
) -> ImageInfo:
    """Build `context_dir` as `tag`, streaming every build line into `log` (`nocache`: reuse no layer).

    Raises BuildFailed with the last lines of output when the build fails, or when it takes longer than
    `timeout` seconds (None: no limit): then the daemon is made to stop the build and `tag` names what it
    named before (nothing, or the earlier image). Build-arg values are never logged (they may hold index
    credentials).
    """
    tail: deque[str] = deque(maxlen=_LOG_TAIL)
    image_id: str | None = None
    previous = _image_id(client, tag) if timeout is not None else None
    deadline = time.monotonic() + timeout if timeout is not None else None
    try:
        with _responses(client) as responses:
            stream: Iterable[dict[str, Any]] = client.api.build(
                path=str(context_dir),
                tag=tag,
                buildargs=dict(build_args),
                rm=True,
                forcerm=True,
                nocache=nocache,
                pull=False,
                decode=True,
                timeout=timeout,  # requests' connect and read timeout until the first line; then _until
            )
            if deadline is not None:
                stream = _until(client, stream, responses, deadline)
            for line in stream:
                if "error" in line or "errorDetail" in line:
                    detail = line.get("errorDetail") or {}
                    message = str(line.get("error") or detail.get("message") or line)
                    raise BuildFailed(f"Building {tag} failed: {message}\nLast build output:\n" + "\n".join(tail))
                text = line.get("stream") or line.get("status")
                if isinstance(text, str):
                    for part in text.rstrip("\n").splitlines():
                        if part.strip():
                            tail.append(part)
                            log(part)
                aux = line.get("aux")
                if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
                    image_id = aux["ID"]
    except (TimeoutError, urllib3.exceptions.TimeoutError, requests.exceptions.Timeout) as exc:
        _untag_if_changed(client, tag, previous)  # the response is closed: the daemon has stopped the build
        raise BuildFailed(
            f"Building {tag} took longer than the limit of {timeout:g} s (build_timeout_seconds): stopped, "
            "nothing tagged. Find the slow step in the output below, or raise the limit.\nLast build output:\n"
            + "\n".join(tail)
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise TransientError(f"Lost the docker daemon while building {tag}: {exc}") from exc
    except docker.errors.APIError as exc:
        raise BuildFailed(f"Docker refused to build {tag}: {exc.explanation or exc}") from exc
    image = client.images.get(image_id or tag)
    return ImageInfo(
        id=str(image.id),
        tag=tag,
        size=int(image.attrs["Size"]),
        labels=dict(image.labels or {}),
    )
