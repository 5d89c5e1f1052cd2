"""Artifacts for the Prefect UI: every S3 object written, as `s3://bucket/key` text with its size and ETag."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from oncology_pipeline.reports import objects_rows
from oncology_pipeline.s3store import S3Object


def record_objects(key: str, title: str, objects: list[S3Object]) -> None:
    """One table artifact under `key`: object, bytes, ETag, version (no links: a bucket's objects are private)."""
    create_table_artifact(table=objects_rows(objects), key=key, description=title)
