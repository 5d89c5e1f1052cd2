"""What publish runs leave on the local Docker engine, for housekeeping: image tags and smoke-test containers.

Only the pipeline's own are touched: tags with a pipeline version on images carrying the model version label,
and smoke-test containers of the repository's images old enough to be a killed run's. Tags are never removed
by force: an image a container uses keeps them (no Prefect here).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import docker

from oncology_model.versioning import VERSION_PATTERN
from oncology_pipeline.image import MODEL_VERSION_LABEL
from oncology_pipeline.smoketest import SMOKE_TEST_LABEL


@dataclass(frozen=True)
class LocalTag:
    """A local tag of an image this pipeline built: `<repository>:<version>` or `<registry>/<repository>:<version>`."""

    reference: str
    version: str
    image_id: str


def pipeline_tags(client: docker.DockerClient, repository: str) -> list[LocalTag]:
    """The local tags each publish leaves behind (the build's tag and the registry's): images carrying the model
    version label, tagged with a pipeline version in `repository` on any registry. Nothing else is listed."""
    found = []
    # One list call (the SDK's images.list inspects each image after listing: one removed meanwhile is a 404).
    for image in client.api.images(filters={"label": MODEL_VERSION_LABEL}):
        for reference in image.get("RepoTags") or []:
            name, tag = docker.utils.parse_repository_tag(reference)
            if (name == repository or name.endswith(f"/{repository}")) and tag and VERSION_PATTERN.fullmatch(tag):
                found.append(LocalTag(reference=reference, version=tag, image_id=str(image["Id"])))
    return found


def remove_tags(client: docker.DockerClient, tags: Iterable[LocalTag]) -> list[str]:
    """Untag each (an image goes with its last tag, with its untagged parents); returns the references removed.

    Never forced: the tags of an image any container uses (running or stopped) are left, and so is a tag
    docker refuses to remove.
    """
    in_use = {str(c["ImageID"]) for c in client.api.containers(all=True)}
    removed = []
    for tag in tags:
        if tag.image_id in in_use:
            continue
        try:
            client.images.remove(tag.reference)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a container started on it meanwhile
                raise
            continue
        removed.append(tag.reference)
    return removed


def remove_smoke_containers(client: docker.DockerClient, repository: str, older_than: float) -> list[str]:
    """Remove the smoke-test containers of `repository`'s images created more than `older_than` seconds ago (left
    by a killed run: the smoke test removes its own); younger ones may belong to a smoke test still running.
    Returns their ids."""
    removed = []
    for found in client.api.containers(all=True, filters={"label": SMOKE_TEST_LABEL}):
        name, _ = docker.utils.parse_repository_tag(str(found["Image"]))
        if name == repository and time.time() - float(found["Created"]) > older_than:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(found["Id"], force=True)
                removed.append(str(found["Id"]))
    return removed
