"""Flow `cleanup`: delete the S3 model versions nobody needs (weekly; a dry run unless told otherwise).

Kept: production, the version it replaced, every version ever promoted (a rollback redeploys it and needs its
bundle) and the newest `keep_candidates` others. Deleted: the model files under
`s3://<model-bucket>/<model-prefix>/<version>/` of the rest. Their release records stay (a few KB of history
each). On a versioned bucket a deletion is a delete marker: the files stay recoverable as noncurrent versions
until the bucket's lifecycle rule expires them. The deletion holds the `deploy` concurrency limit, so no promotion
runs meanwhile, and reads the production pointer again right before each version.
"""

from __future__ import annotations

from prefect.concurrency.sync import concurrency

from flows.deploy import DEPLOY_LIMIT
from oncology_pipeline.settings import Overrides, load_settings
from tasks.housekeeping import delete_model_versions, plan_cleanup, report_cleanup
from tasks.runs import ensure_concurrency_limit, pipeline_flow


@pipeline_flow("cleanup")
def cleanup(dry_run: bool = True, overrides: Overrides = None) -> list[str]:
    """Delete the model files of old S3 versions that neither serve nor ever served; returns those versions.

    Args:
        dry_run: only list what would be deleted (the `model-cleanup` artifact and the log); delete nothing.
        overrides: settings for this run, e.g. {"keep_candidates": 10} (see oncology_pipeline.settings).
    """
    settings = load_settings(overrides)
    decisions = plan_cleanup(settings)
    stale = [d.version for d in decisions if d.delete]
    deleted: list[str] = []
    if stale and not dry_run:
        ensure_concurrency_limit(DEPLOY_LIMIT)
        with concurrency(DEPLOY_LIMIT, occupy=1, strict=True, lease_duration=settings.deploy_lease_seconds):
            deleted = delete_model_versions(settings, stale)
    report_cleanup(settings, decisions, deleted, dry_run)
    return stale if dry_run else deleted


if __name__ == "__main__":
    cleanup()
