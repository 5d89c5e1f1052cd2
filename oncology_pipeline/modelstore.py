"""Model versions in S3 and the production pointer (`<model-prefix>/production.json`) that says which one serves.

The pointer is written with a compare-and-swap (a conditional put on the ETag read), so two promotions never
lose an update; a version's files are downloaded into a directory that appears whole or not at all. The weekly
cleanup lists the stored versions and deletes old ones here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from oncology_model.bundle import METADATA_FILE, MODEL_FILE
from oncology_model.files import staged_directory
from oncology_pipeline import layout
from oncology_pipeline.errors import ConfigurationError, PromotionConflict
from oncology_pipeline.s3store import ABSENT, S3Object, delete_prefix, error_code, get_bytes, head, put_bytes, s3_errors


class ProductionPointer(BaseModel):
    """`models/production.json`: which version serves, and the files it is made of."""

    model_version: str
    keys: list[str]
    updated_at: datetime
    previous_version: str | None = None
    image: str | None = None
    release: str | None = None


def read_pointer(s3: Any, bucket: str, prefix: str) -> ProductionPointer | None:
    """The production pointer, or None before the first model."""
    return read_pointer_etag(s3, bucket, prefix)[0]


def read_pointer_etag(s3: Any, bucket: str, prefix: str) -> tuple[ProductionPointer | None, str]:
    """The production pointer and its ETag (`ABSENT` before the first model), for a conditional write."""
    key = layout.pointer_key(prefix)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in {"404", "NoSuchKey"}:
            return None, ABSENT
        with s3_errors(layout.uri(bucket, key)):
            raise
    pointer = ProductionPointer.model_validate_json(answer["Body"].read())
    return pointer, str(answer["ETag"]).strip('"')


def write_pointer(
    s3: Any,
    bucket: str,
    prefix: str,
    version: str,
    objects: list[S3Object],
    *,
    expected_etag: str,
    image: str | None = None,
    release: str | None = None,
) -> S3Object:
    """Point production at `version` if the pointer still has `expected_etag` (compare-and-swap).

    Written last, after every file of the version is in place. A writer that lost the race gets
    `PromotionConflict` naming the version that won; nothing is overwritten. A retry of a write that landed
    (the same version and image) is a success.
    """
    key = layout.pointer_key(prefix)
    previous, etag = read_pointer_etag(s3, bucket, prefix)
    if etag != expected_etag:
        if previous is not None and (previous.model_version, previous.image) == (version, image):
            return head(s3, bucket, key)  # our own earlier attempt (a retry after a lost reply): done already
        raise _conflict(bucket, key, version, previous)
    if previous is not None and previous.model_version == version:  # written again (a retry): keep the way back
        previous_version = previous.previous_version
    else:
        previous_version = previous.model_version if previous else None
    pointer = ProductionPointer(
        model_version=version,
        keys=[o.key for o in objects],
        updated_at=datetime.now(UTC),
        previous_version=previous_version,
        image=image,
        release=release,
    )
    data = pointer.model_dump_json(indent=2).encode()
    try:
        return put_bytes(s3, bucket, key, data, "application/json", if_match=etag)
    except ClientError as exc:
        if error_code(exc) not in {"PreconditionFailed", "412"}:
            raise
        raise _conflict(bucket, key, version, read_pointer(s3, bucket, prefix)) from exc


def _conflict(bucket: str, key: str, version: str, winner: ProductionPointer | None) -> PromotionConflict:
    won = winner.model_version if winner else "(none: the pointer was deleted)"
    return PromotionConflict(
        f"{layout.uri(bucket, key)} changed while this run promoted {version}: production is now {won}. "
        "Nothing was overwritten; release again if this version should serve."
    )


def version_keys(s3: Any, bucket: str, prefix: str, version: str) -> list[str]:
    """The keys of one model version's files; a version whose upload was broken off (a bundle file missing)
    is refused, as is one that holds nothing."""
    folder = f"{layout.version_prefix(prefix, version)}/"
    with s3_errors(layout.uri(bucket, folder)):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    if not keys:
        raise ConfigurationError(f"{layout.uri(bucket, folder)} holds no model: check the version")
    missing = [name for name in (MODEL_FILE, METADATA_FILE) if layout.bundle_key(prefix, version, name) not in keys]
    if missing:
        raise ConfigurationError(
            f"{layout.uri(bucket, folder)} is incomplete ({', '.join(missing)} missing): its upload was broken "
            "off. Train again, or release another version."
        )
    return keys


def fetch_bundle(
    s3: Any, bucket: str, prefix: str, cache_root: Path, version: str | None = None
) -> tuple[str, Path] | None:
    """Download a model version (default: production) into `cache_root/<version>`; None before the first model."""
    if version is None:
        pointer = read_pointer(s3, bucket, prefix)
        if pointer is None:
            return None
        version, keys = pointer.model_version, pointer.keys
    else:
        keys = version_keys(s3, bucket, prefix, version)
    dest = cache_root / version
    if not dest.exists():
        download_version(s3, bucket, prefix, version, keys, dest)
    return version, dest


def download_version(s3: Any, bucket: str, prefix: str, version: str, keys: list[str], dest: Path) -> Path:
    """Download the files of one model version into `dest` (atomically)."""
    with staged_directory(dest) as staging:
        for key in keys:
            relative = key.removeprefix(f"{layout.version_prefix(prefix, version)}/")
            data = get_bytes(s3, bucket, key)
            if data is None:
                raise ConfigurationError(f"{layout.uri(bucket, key)} is listed in the production pointer but missing")
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_bytes(data)
    return dest


def stored_versions(s3: Any, bucket: str, prefix: str) -> set[str]:
    """The folders under `s3://bucket/prefix/` that hold objects (model versions).

    Taken from the keys, not from a delimited listing: on a versioned bucket moto still lists a folder whose
    objects were all deleted.
    """
    with s3_errors(layout.uri(bucket, f"{prefix}/")):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        keys = [obj["Key"].removeprefix(f"{prefix}/") for page in pages for obj in page.get("Contents", [])]
    return {key.split("/", 1)[0] for key in keys if "/" in key}


def delete_version(s3: Any, bucket: str, prefix: str, version: str) -> int:
    """Delete every file of one model version (its release record stays); returns how many there were."""
    return delete_prefix(s3, bucket, f"{layout.version_prefix(prefix, version)}/")
