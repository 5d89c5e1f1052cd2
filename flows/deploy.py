"""Flow `deploy`: set image -> wait for the rollout -> verify -> promote, or roll back (the seed's `make deploy`).

Production means verified serving: `models/production.json` moves to `version` only after every Deployment
rolled out, the Service answers with that model and its golden set matches. Anything else, including a lost
concurrency lease or an interruption, puts production's recorded image and annotations back before the run ends
(what ran before, when there is no production yet).

It starts by reading the world (`reconcile`): production's records against what the cluster runs and serves; a
disagreement is shown in the `reconcile` artifact and sent as an alert. The pipeline's `reconcile` step does the
same and, with `reconcile: repair`, rolls production's recorded image out again through the same path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from kubernetes.client import ApiClient
from prefect.client.schemas.objects import State
from prefect.concurrency.sync import concurrency
from prefect.states import Completed

from oncology_pipeline import releases
from oncology_pipeline.cluster import ImageChange, Restore
from oncology_pipeline.errors import RolloutFailed
from oncology_pipeline.reconcile import Observation, decide
from oncology_pipeline.releases import ClusterSection, DeploymentChange, VerificationSection, deployment_annotations
from oncology_pipeline.settings import Overrides, PipelineSettings, load_settings
from tasks.deploy import (
    connect_cluster,
    report_deploy,
    rollback,
    set_image,
    shielded,
    verify_release,
    wait_for_rollout,
)
from tasks.reconcile import observe, report_reconcile
from tasks.releases import (
    finish_promotion,
    production_version,
    promote_model,
    record_uri,
    stage_times,
    update_release,
)
from tasks.runs import ensure_concurrency_limit, pipeline_flow, stamp_run
from tasks.training import model_bundle_to_use

DEPLOY_LIMIT = "deploy"


@pipeline_flow("deploy", "version")
def deploy(image: str, version: str, overrides: Overrides = None) -> str:
    """Roll out `image` and make model `version` production once the running service is verified.

    Args:
        image: the web-service image pinned by digest, `<registry>/<repository>@sha256:<64 hex>`.
        version: the model version the image serves (a stored candidate under models/<version>/).
        overrides: settings for this run (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings(overrides)
    version = stamp_run(version)
    bundle_dir = model_bundle_to_use(settings, None, version)  # its golden set; refused before any change
    ensure_concurrency_limit(DEPLOY_LIMIT)
    annotations = deployment_annotations(version, record_uri(settings, version))
    api = connect_cluster(settings)
    update_release(settings, version, {"stages": stage_times("deploy")})
    with concurrency(DEPLOY_LIMIT, occupy=1, strict=True, lease_duration=settings.deploy_lease_seconds):
        finish_promotion(settings)  # a promotion cut off after its pointer write is finished first
        observation = observe(api, settings)
        report_reconcile(settings, observation, decide(observation, settings.reconcile, deploying=version))
        restore = observation.restore_for(image)
        rolled = _roll_out(api, settings, image, version, bundle_dir, annotations, restore, observation.pointer_etag)
        if rolled.failed is not None:
            _rolled_back(settings, version, image, rolled)
    return _released(settings, version, image, rolled)


def reconcile(settings: PipelineSettings) -> tuple[Observation, str]:
    """Observe first (holding the deploy slot, so that no deploy is half-way), report, alert on a drift and, with
    `reconcile: repair`, roll production's recorded image out again and verify it. The pointer never moves.

    Returns the observation and what was done about it; RolloutFailed when the repair fails (what was found goes
    back: it was serving).
    """
    api = connect_cluster(settings)
    ensure_concurrency_limit(DEPLOY_LIMIT)
    with concurrency(DEPLOY_LIMIT, occupy=1, strict=True, lease_duration=settings.deploy_lease_seconds):
        finish_promotion(settings)  # a promotion cut off after its pointer write is finished first
        observation = observe(api, settings)
        decision = decide(observation, settings.reconcile)
        report_reconcile(settings, observation, decision)
        repair = decision.repair
        if repair is None:
            return observation, decision.text
        bundle_dir = model_bundle_to_use(settings, None, repair.version)
        rolled = _roll_out(api, settings, repair.image, repair.version, bundle_dir, repair.annotations, None)
    if rolled.failed is not None:
        reason = rolled.failed.result(raise_on_failure=False)
        raise RolloutFailed(f"repairing production {repair.version} failed: {reason} Put back: {rolled.restored}.")
    return (
        observation,
        f"repaired: {repair.image} rolled out again; {rolled.steps[1].result()}; the pointer did not move",
    )


@dataclass(frozen=True)
class _Rollout:
    """The patches made, the steps' states in order, and what the rollback restored when a step failed."""

    changes: list[ImageChange]
    steps: list[State[Any]]
    restored: str | None

    @property
    def failed(self) -> State[Any] | None:
        """The first step that did not complete."""
        return next((step for step in self.steps if not step.is_completed()), None)


def _cluster(settings: PipelineSettings, rolled: _Rollout) -> ClusterSection:
    """The release record's cluster section: where the deploy ran and each Deployment it patched."""
    return ClusterSection(
        context=settings.kube_context,
        namespace=settings.kube_namespace,
        deployments=[
            DeploymentChange(name=c.deployment, previous_image=c.previous_image, new_image=c.new_image)
            for c in rolled.changes
        ],
    )


def _rolled_back(settings: PipelineSettings, version: str, image: str, rolled: _Rollout) -> NoReturn:
    """Record and report a deploy that was rolled back (why, what was restored, the verification if it was reached);
    RolloutFailed."""
    failed = rolled.failed
    reason = str(failed.result(raise_on_failure=False)) if failed is not None else "-"
    steps = len(rolled.steps)
    verified = "passed" if steps > 2 else "not reached" if steps < 2 else f"FAILED: {reason}"
    check = VerificationSection(passed=steps > 2, summary=verified) if steps >= 2 else None
    change = releases.rolled_back(_cluster(settings, rolled), image, reason, rolled.restored, check)
    update_release(settings, version, {**change, "stages": stage_times("deploy", "rolled back")})
    report_deploy(version, image, change["cluster"], change["rollout"], verified)
    raise RolloutFailed(f"{reason} Rolled back: {rolled.restored}.")


def _released(settings: PipelineSettings, version: str, image: str, rolled: _Rollout) -> str:
    """Record and report a verified, promoted deploy; what the run returns."""
    rollout, summary = str(rolled.steps[0].result()), str(rolled.steps[1].result())
    change = releases.rolled_out(_cluster(settings, rolled), image, rollout, summary)
    report_deploy(version, image, change["cluster"], change["rollout"], summary)
    update_release(settings, version, {**change, "stages": stage_times("deploy", "verified, promoted")})
    return f"{rollout}; {summary}; production is {version}"


def _roll_out(
    api: ApiClient,
    settings: PipelineSettings,
    image: str,
    version: str,
    bundle_dir: Path,
    annotations: Mapping[str, str],
    restore: Restore | None,
    promote_etag: str | None = None,
) -> _Rollout:
    """set image -> wait for the rollout -> verify `version` (-> promote it, compare-and-swap on `promote_etag`);
    a step that fails, or an interruption, puts `restore` back (None: what ran before). The one compensation path
    of deploy and repair (a repair promotes nothing: production is already recorded). Once the pointer names
    `version` nothing is rolled back: the promotion is finished instead (now, or by the next run)."""
    changes: list[ImageChange] = []
    steps: list[State[Any]] = []
    promoting = False
    try:
        with shielded():  # set_image undoes its own partial patches; a cancellation lands after it returned
            changes = set_image(api, settings, image, annotations, restore, releases.serving_env(image, version))
        steps.append(wait_for_rollout(api, settings, changes, return_state=True))
        if steps[-1].is_completed():
            steps.append(verify_release(api, settings, version, bundle_dir, return_state=True))
        if promote_etag is not None and steps[-1].is_completed():
            promoting = True
            steps.append(promote_model(settings, version, image, promote_etag, return_state=True))
            if not steps[-1].is_completed() and _pointer_names(settings, version):
                steps[-1] = finish_promotion(settings, return_state=True)
                if not steps[-1].is_completed():
                    steps[-1] = Completed(message="promoted; its release records are finished by the next run")
    except BaseException:  # a lost lease, an interruption: never leave the cluster half-way
        with shielded():
            if changes and (not promoting or not _pointer_names(settings, version)):
                rollback(api, settings, changes)
        raise
    rolled = _Rollout(changes, steps, None)
    if rolled.failed is None:
        return rolled
    with shielded():
        return _Rollout(changes, steps, rollback(api, settings, changes))


def _pointer_names(settings: PipelineSettings, version: str) -> bool:
    """Whether the production pointer names `version` (a promotion that failed after its pointer write); False
    when the pointer cannot be read (the rollback then puts production's recorded image back)."""
    state = production_version(settings, return_state=True)
    return state.is_completed() and state.result() == version


if __name__ == "__main__":
    import sys

    deploy(sys.argv[1], sys.argv[2])
