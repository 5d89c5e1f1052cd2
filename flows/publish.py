"""Flow `publish`: build -> smoke test -> ECR login -> ensure repository -> push (the seed's `make publish`)."""

from __future__ import annotations

from pathlib import Path

from oncology_pipeline.settings import Overrides, load_settings
from tasks.publish import build_image, ecr_login, ensure_repository, push_image, report_image, smoke_test_image
from tasks.runs import pipeline_flow, stamp_run
from tasks.training import model_bundle_to_use


@pipeline_flow("publish", "version")
def publish(
    version: str | None = None,
    bundle_dir: Path | None = None,
    model_version: str | None = None,
    overrides: Overrides = None,
) -> str:
    """Publish the web-service image with `bundle_dir` (else `model_version`, else production from S3) baked in;
    returns the image pinned by digest. A failed smoke test stops the flow before any push."""
    settings = load_settings(overrides)
    version = stamp_run(version)
    bundle = model_bundle_to_use(settings, bundle_dir, model_version)
    info = build_image(settings, bundle, version)
    smoke = smoke_test_image(settings, info, bundle)
    credentials = ecr_login(settings)
    repository_uri = ensure_repository(settings)
    pinned = push_image(settings, info, credentials, repository_uri, version)
    report_image(pinned, info, smoke)
    return pinned


if __name__ == "__main__":
    publish()
