"""Artifacts for the Prefect UI: links to every S3 object written."""

from __future__ import annotations

from urllib.parse import quote

from prefect.artifacts import create_link_artifact, create_markdown_artifact

from oncology_pipeline.reports import links_markdown
from oncology_pipeline.s3store import S3Object
from oncology_pipeline.settings import PipelineSettings


def object_url(settings: PipelineSettings, obj: S3Object) -> str:
    """A browsable address of an object: the local endpoint, or the AWS console."""
    if settings.s3_endpoint_url:
        return f"{settings.s3_endpoint_url.rstrip('/')}/{obj.bucket}/{quote(obj.key)}"
    return (
        f"https://s3.console.aws.amazon.com/s3/object/{obj.bucket}?region={settings.aws_region}&prefix={quote(obj.key)}"
    )


def link_objects(settings: PipelineSettings, key: str, title: str, objects: list[S3Object]) -> None:
    """One link artifact per object, plus a markdown list of them all under `key`."""
    links = [(obj.uri, object_url(settings, obj)) for obj in objects]
    for uri, url in links:
        create_link_artifact(link=url, link_text=uri, description=f"{title}: {uri}")
    create_markdown_artifact(markdown=links_markdown(title, links), key=key, description=title)
