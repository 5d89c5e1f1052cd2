"""Flow `deploy`: connect -> set image -> wait for the rollout -> roll back on failure (the seed's `make deploy`)."""

from __future__ import annotations

from typing import Any

from prefect import flow, tags
from prefect.concurrency.sync import concurrency

from oncology_pipeline.errors import RolloutFailed
from oncology_pipeline.settings import load_settings
from tasks.deploy import connect_cluster, rollback, set_image, wait_for_rollout
from tasks.runs import ensure_concurrency_limit, stamp_run

DEPLOY_LIMIT = "deploy"


@flow(name="deploy", log_prints=False)
def deploy(image: str, version: str | None = None, overrides: dict[str, Any] | None = None) -> str:
    """Roll `image` (pinned by digest) out to the team's web-service Deployments; one deploy at a time."""
    settings = load_settings(overrides)
    stamp_run("deploy", version)
    ensure_concurrency_limit(DEPLOY_LIMIT)
    with tags("deploy"):
        api = connect_cluster(settings)
        with concurrency(DEPLOY_LIMIT, occupy=1, strict=True):
            changes = set_image(api, settings, image)
            rollout = wait_for_rollout(api, settings, changes, return_state=True)
            if not rollout.is_completed():  # failed, timed out, crashed or cancelled: put the old image back
                restored = rollback(api, settings, changes)
                reason = rollout.result(raise_on_failure=False)
                raise RolloutFailed(f"{reason} Rolled back: {restored}.")
    result: str = rollout.result()
    return result


if __name__ == "__main__":
    import sys

    deploy(sys.argv[1])
