"""Flow `deploy`: set image -> wait for the rollout -> verify -> promote, or roll back (the seed's `make deploy`).

Production means verified serving: `models/production.json` moves to `version` only after every Deployment
rolled out, the Service answers with that model and its golden set matches. Anything else, including a lost
concurrency lease or an interruption, puts the previous image and annotations back before the run ends.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.concurrency.sync import concurrency

from oncology_pipeline.errors import RolloutFailed
from oncology_pipeline.releases import ANNOTATION_RELEASE, ANNOTATION_VERSION
from oncology_pipeline.settings import load_settings
from tasks.deploy import connect_cluster, report_deploy, rollback, set_image, verify_release, wait_for_rollout
from tasks.releases import promote_model, read_production, record_uri, stage_times, update_release
from tasks.runs import ensure_concurrency_limit, run_name, stamp_run
from tasks.training import model_bundle_to_use

DEPLOY_LIMIT = "deploy"


@flow(
    name="deploy",
    flow_run_name=run_name("deploy", "version"),
    log_prints=False,
    timeout_seconds=load_settings().stage_timeout_seconds,
)
def deploy(image: str, version: str, overrides: dict[str, Any] | None = None) -> str:
    """Roll out `image` and make model `version` production once the running service is verified.

    Args:
        image: the web-service image pinned by digest, `<registry>/<repository>@sha256:<64 hex>`.
        version: the model version the image serves (a stored candidate under models/<version>/).
        overrides: settings for this run (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings(overrides)
    version = stamp_run("deploy", version)
    bundle_dir = model_bundle_to_use(settings, None, version)  # its golden set; refused before any change
    ensure_concurrency_limit(DEPLOY_LIMIT)
    annotations = {ANNOTATION_VERSION: version, ANNOTATION_RELEASE: record_uri(settings, version)}
    api = connect_cluster(settings)
    update_release(settings, version, {"stages": stage_times("deploy")})
    with concurrency(DEPLOY_LIMIT, occupy=1, strict=True):
        _, etag = read_production(settings)
        changes = set_image(api, settings, image, annotations)
        cluster = {
            "context": settings.kube_context,
            "namespace": settings.kube_namespace,
            "deployments": [
                {"name": c.deployment, "previous_image": c.previous_image, "new_image": c.new_image} for c in changes
            ],
        }
        try:
            rollout = wait_for_rollout(api, settings, changes, return_state=True)
            steps: list[State[Any]] = [rollout]
            if rollout.is_completed():
                steps.append(verify_release(api, settings, version, bundle_dir, return_state=True))
            if steps[-1].is_completed():
                steps.append(promote_model(settings, version, image, etag, return_state=True))
        except BaseException:  # a lost lease, an interruption: never leave the cluster half-way
            rollback(api, settings, changes)
            raise
        failed = next((step for step in steps if not step.is_completed()), None)
        if failed is not None:
            restored = rollback(api, settings, changes)
            reason = failed.result(raise_on_failure=False)
            undone = {"outcome": "rolled back", "image": image, "reason": str(reason), "restored": restored}
            update_release(
                settings,
                version,
                {
                    "cluster": cluster,
                    "outcome": f"failed at deploy: {reason}",
                    "rollout": undone,
                    "stages": stage_times("deploy", "rolled back"),
                },
            )
            verified = "passed" if len(steps) > 2 else "not reached" if len(steps) < 2 else f"FAILED: {reason}"
            report_deploy(version, image, cluster, undone, verified)
            raise RolloutFailed(f"{reason} Rolled back: {restored}.")
    summary = str(steps[1].result())
    report_deploy(version, image, cluster, {"outcome": "rolled out", "detail": str(rollout.result())}, summary)
    update_release(
        settings,
        version,
        {
            "cluster": cluster,
            "outcome": "released: verified serving, production",
            "rollout": {"outcome": "rolled out", "detail": str(rollout.result())},
            "image": {"reference": image, "digest": image.rsplit("@", 1)[-1]},
            "verification": {"passed": True, "summary": summary},
            "stages": stage_times("deploy", "verified, promoted"),
        },
    )
    return f"{rollout.result()}; {summary}; production is {version}"


if __name__ == "__main__":
    import sys

    deploy(sys.argv[1], sys.argv[2])
