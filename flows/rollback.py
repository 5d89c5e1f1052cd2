"""Flow `rollback`: put an earlier version back in production by redeploying the image its release recorded."""

from __future__ import annotations

from flows.deploy import deploy
from oncology_pipeline.errors import ConfigurationError
from oncology_pipeline.settings import Overrides, load_settings
from tasks.releases import read_release, record_operator_action
from tasks.runs import pipeline_flow, stamp_run


@pipeline_flow("rollback", "version")
def rollback(version: str, reason: str | None = None, overrides: Overrides = None) -> str:
    """Redeploy model `version` by the digest its release record holds, verify it, and make it production. The
    records say who did it and why: the version it replaced is `rolled_back` (a nightly never releases it again)
    and `version` is `pinned`.

    Args:
        version: a model version that was published before (see s3://<model-bucket>/releases/).
        reason: why (kept in both release records and shown where a nightly declines to release the version).
        overrides: settings for this run (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings(overrides)
    version = stamp_run(version)
    image = read_release(settings, version).image.reference
    if not image:
        raise ConfigurationError(f"the release record of {version} holds no image: it was never published")
    done = deploy(image=image, version=version, overrides=overrides)
    record_operator_action(settings, "rollback", version, reason)
    return done


if __name__ == "__main__":
    import sys

    rollback(sys.argv[1])
