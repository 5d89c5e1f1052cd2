"""The release invariant: the production pointer, the image and annotations the cluster runs, and the release
records agree, and nothing that existed before is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncology_pipeline import layout, modelstore, releases, s3store
from oncology_pipeline.cluster import WEBSERVICE_CONTAINER
from oncology_pipeline.releases import ANNOTATION_RELEASE, ANNOTATION_VERSION
from oncology_pipeline.settings import PipelineSettings
from standins.kube import KubeStandIn

DEPLOYMENT = "oncology-webservice"


def snapshot(s3: Any, bucket: str) -> dict[str, str]:
    """Every key of a bucket with its ETag."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def assert_invariant(
    s3: Any,
    settings: PipelineSettings,
    standin: KubeStandIn,
    *,
    version: str | None,
    image: str,
    before: dict[str, str] | None = None,
) -> None:
    """Production is `version` served by `image` everywhere it is recorded; every key in `before` still exists."""
    pointer = modelstore.read_pointer(s3, settings.model_bucket, settings.model_prefix)
    assert (pointer.model_version if pointer else None) == version, f"pointer: {pointer}"
    deployment = standin.deployment(settings.kube_namespace, DEPLOYMENT)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert next(c["image"] for c in containers if c["name"] == WEBSERVICE_CONTAINER) == image
    annotations = deployment["metadata"].get("annotations") or {}
    assert annotations.get(ANNOTATION_VERSION) == version
    records = {
        key.removeprefix(f"{layout.RELEASES}/").removesuffix(".json")
        for key in snapshot(s3, settings.model_bucket)
        if key.startswith(f"{layout.RELEASES}/") and key.count("/") == 1  # not the fingerprint index
    }
    in_production = set()
    for name in records:
        record = releases.read_record(s3, settings.model_bucket, name)
        if record is not None and record.production:
            in_production.add(name)
    assert in_production == ({version} if version else set()), f"records saying production: {in_production}"
    if version is not None and pointer is not None:
        record = releases.read_record(s3, settings.model_bucket, version)
        assert record is not None and record.image.reference == image == pointer.image
        assert (
            annotations.get(ANNOTATION_RELEASE)
            == pointer.release
            == f"s3://{settings.model_bucket}/{layout.release_key(version)}"
        )
    if before is not None:
        now = snapshot(s3, settings.model_bucket)
        assert set(before) <= set(now), f"lost: {set(before) - set(now)}"


def seed_production(s3: Any, settings: PipelineSettings, bundle: Path, image: str) -> str:
    """An earlier release in S3 as the pipeline leaves it: the bundle, its release record, the pointer. Its version."""
    metadata = json.loads((bundle / "metadata.json").read_text())
    version = str(metadata["model_version"])
    objects = s3store.upload_directory(s3, settings.model_bucket, f"{settings.model_prefix}/{version}", bundle)
    record = releases.ReleaseRecord(
        model_version=version,
        production=True,
        outcome="released: verified serving, production",
        gate=releases.GateSection(passed=True),
        image=releases.ImageSection(reference=image, digest=image.rsplit("@", 1)[-1]),
    )
    releases.write_record(s3, settings.model_bucket, record)
    _, etag = modelstore.read_pointer_etag(s3, settings.model_bucket, settings.model_prefix)
    modelstore.write_pointer(
        s3,
        settings.model_bucket,
        settings.model_prefix,
        version,
        objects,
        expected_etag=etag,
        image=image,
        release=f"s3://{settings.model_bucket}/{layout.release_key(version)}",
    )
    return version


def production_annotations(settings: PipelineSettings, version: str) -> dict[str, str]:
    """The annotations a verified deploy of `version` leaves on the Deployments."""
    return {
        ANNOTATION_VERSION: version,
        ANNOTATION_RELEASE: f"s3://{settings.model_bucket}/{layout.release_key(version)}",
    }
