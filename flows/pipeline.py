"""Flow `train-test-publish-deploy`: the whole nightly pipeline, one version through every stage.

Before training it fingerprints its inputs (data, model settings, code, lock, base image), then, when it may
deploy, reads the world: production's records against what the cluster runs and serves (flows/deploy.py
`reconcile`: a drift is reported, alerted and, with `reconcile: repair`, repaired). When production was built from
the same inputs the run ends there (a `no-change` artifact, which says so when the cluster had drifted); when an
earlier run with the same inputs stopped after its model passed the gate, this run resumes it at the first stage
that did not complete (so does Prefect's Retry of that run: it finds the same record). `force=True` runs
everything.

The run stops before publishing when the gate rejects the model or a test suite fails, and before deploying
when publish fails; it then ends Failed with `failed at <stage>: <reason>` as its state message. The model
becomes production only when the deploy stage has verified the running service (see flows/deploy.py).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Failed

from flows.deploy import deploy, reconcile
from flows.publish import publish
from flows.test import run_test_suites
from flows.train import train
from oncology_pipeline import layout, releases
from oncology_pipeline.errors import ConfigurationError
from oncology_pipeline.fingerprint import Fingerprint, Plan
from oncology_pipeline.settings import Overrides, PipelineSettings, load_settings
from oncology_pipeline.summary import STAGES, PipelineSummary
from tasks.data import download_labelled_data, download_training_data
from tasks.fingerprint import fingerprint_inputs, plan_run, remember_fingerprint, report_no_change
from tasks.housekeeping import tidy_local
from tasks.releases import read_release, record_operator_action, record_uri, stage_times, update_release
from tasks.runs import pipeline_flow, stamp_run
from tasks.stages import StageFailed, run_stage
from tasks.summary import record_summary
from tasks.training import model_bundle_to_use

FLOW_NAME = "train-test-publish-deploy"


@pipeline_flow(FLOW_NAME, "model_version", "version", limit="pipeline")
def train_test_publish_deploy(
    version: str | None = None,
    model_version: str | None = None,
    publish_image: bool = True,
    deploy_image: bool = True,
    force: bool = False,
    overrides: Overrides = None,
) -> PipelineSummary | State[Any]:
    """Train (or take a stored candidate), test, publish and deploy one model version.

    Args:
        version: the version to stamp on a new model (default: the run's UTC start and flow-run id).
        model_version: release this stored candidate instead of training a new one.
        publish_image: build and push the web-service image.
        deploy_image: roll the image out, verify it and make it production.
        force: run every stage even when production was built from the same inputs.
        overrides: settings for this run (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings(overrides)
    summary = PipelineSummary(version=stamp_run(model_version or version))
    try:
        plan, inputs = _plan(settings, model_version, force)
        if publish_image and deploy_image:  # a run that may change the cluster first sees what it serves
            _reconcile(summary, settings)
        if inputs is not None and plan.action in ("no-change", "held"):
            return _nothing_to_release(summary, plan, inputs)
        if inputs is not None:
            _begin(summary, settings, plan, inputs)
        bundle_dir = _train(summary, settings, plan, overrides)
        _test(summary, settings, plan, bundle_dir, overrides)
        if not publish_image:
            return summary.skip({"publish": "publish_image=False", "deploy": "no image: publish was skipped"})
        _publish(summary, settings, plan, bundle_dir, overrides)
        if not deploy_image:
            return summary.skip({"deploy": "deploy_image=False"})
        return _deploy(summary, settings, chosen=model_version is not None, overrides=overrides)
    except StageFailed as failure:
        return _failed(summary, settings, failure)
    finally:
        _finish(summary, settings)


def _plan(settings: PipelineSettings, model_version: str | None, force: bool) -> tuple[Plan, Fingerprint | None]:
    """What this run does: release the chosen candidate, or what the inputs' fingerprint says (fingerprint.Plan)."""
    if model_version:
        return Plan("resume", "model_version given: release that candidate", model_version), None
    inputs = fingerprint_inputs(settings, download_training_data(settings), download_labelled_data(settings))
    return plan_run(settings, inputs, force), inputs


def _reconcile(summary: PipelineSummary, settings: PipelineSettings) -> None:
    """Observe first, and repair or alert (flows/deploy.py `reconcile`); the summary says what was found and done.
    StageFailed("reconcile") when the cluster cannot be read or the repair fails: no stage runs then."""
    try:
        observation, summary.reconcile = reconcile(settings)
    except Exception as exc:
        summary.reconcile = f"FAILED: {exc}"
        summary.skip(dict.fromkeys(STAGES, "reconcile failed"))
        raise StageFailed("reconcile", exc) from exc
    summary.drifts = [str(drift) for drift in observation.drifts]


def _nothing_to_release(summary: PipelineSummary, plan: Plan, inputs: Fingerprint) -> PipelineSummary:
    """No change, or the version made from these inputs is held back: the `no-change` artifact says why (and what
    the run did about a cluster that had drifted)."""
    why = plan.reason if plan.action == "held" else "no change: production was built from the same inputs"
    summary.skip(dict.fromkeys(STAGES, why))
    summary.rollout = report_no_change(plan, inputs, summary.reconcile if summary.drifts else None)
    return summary


def _begin(summary: PipelineSummary, settings: PipelineSettings, plan: Plan, inputs: Fingerprint) -> None:
    """Resume the earlier run's version, or record this run's inputs and index them for the runs after it."""
    if plan.action == "resume" and plan.version:
        summary.version = stamp_run(plan.version)
        return
    update_release(settings, summary.version, {"fingerprint": inputs.model_dump(mode="json")})
    remember_fingerprint(settings, inputs, summary.version)


def _train(summary: PipelineSummary, settings: PipelineSettings, plan: Plan, overrides: dict[str, Any] | None) -> Path:
    """Reuse the candidate (a resumed run, a chosen version) or train a new one; its bundle."""
    version = summary.version
    if plan.action == "resume":
        bundle_dir: Path = run_stage(summary, settings, "train", partial(_candidate, settings), version=version)
        summary.stages["train"] = f"candidate {version} reused (not retrained): {plan.reason}"
        return bundle_dir
    trained = run_stage(summary, settings, "train", train, version=version, overrides=overrides)
    summary.stages["train"] = "model approved by the quality gate: a candidate"
    summary.metrics, summary.gate, summary.s3_uris = trained.metrics, trained.gate, list(trained.s3_uris)
    return Path(trained.bundle_dir)


def _test(
    summary: PipelineSummary, settings: PipelineSettings, plan: Plan, bundle_dir: Path, overrides: dict[str, Any] | None
) -> None:
    """Run the suites against the bundle, unless the resumed run passed them."""
    version = summary.version
    if plan.tested:
        summary.stages["test"] = f"passed in the earlier run of {version} (not re-run)"
        return
    tested = run_stage(
        summary, settings, "test", run_test_suites, version=version, model_dir=bundle_dir, overrides=overrides
    )
    summary.stages["test"] = ", ".join(f"{n}: {tested.tests[n]} tests, {c} %" for n, c in tested.coverage.items())
    summary.coverage, summary.s3_uris = tested.coverage, [*summary.s3_uris, *tested.s3_uris]
    update_release(settings, version, releases.tested(tested.tests, tested.coverage))


def _publish(
    summary: PipelineSummary, settings: PipelineSettings, plan: Plan, bundle_dir: Path, overrides: dict[str, Any] | None
) -> None:
    """Build and push the image, unless the resumed run pushed one the registry still holds."""
    version = summary.version
    if plan.image:
        summary.image = plan.image
        summary.stages["publish"] = f"pushed in the earlier run (not rebuilt): {plan.image}"
        return
    summary.image = run_stage(
        summary, settings, "publish", publish, version=version, bundle_dir=bundle_dir, overrides=overrides
    )
    summary.stages["publish"] = f"pushed {summary.image}"
    update_release(settings, version, releases.published(str(summary.image), version))


def _deploy(
    summary: PipelineSummary, settings: PipelineSettings, *, chosen: bool, overrides: dict[str, Any] | None
) -> PipelineSummary:
    """Roll the image out, verify it and promote it (flows/deploy.py); a chosen version is pinned in its record."""
    version = summary.version
    summary.rollout = run_stage(
        summary, settings, "deploy", deploy, image=summary.image, version=version, overrides=overrides
    )
    summary.stages["deploy"] = summary.rollout or "rolled out"
    if chosen:  # a person chose this version: the records say so
        record_operator_action(settings, "release", version, None)
    pointer = layout.uri(settings.model_bucket, layout.pointer_key(settings.model_prefix))
    summary.s3_uris = [*summary.s3_uris, pointer, record_uri(settings, version)]
    return summary


def _failed(summary: PipelineSummary, settings: PipelineSettings, failure: StageFailed) -> State[Any]:
    """The run ends Failed with `failed at <stage>: <reason>`; the version's record says so (the deploy flow wrote
    its own outcome; a reconcile failure comes before this run's version has anything to record)."""
    if failure.stage == "deploy":
        summary.rollout = str(failure.cause)
    elif failure.stage != "reconcile":
        update_release(settings, summary.version, releases.failed(str(failure)))
    return Failed(message=str(failure), data=failure.cause)


def _finish(summary: PipelineSummary, settings: PipelineSettings) -> None:
    """Record the stages this run ran (a resumed run keeps the earlier run's times of the others), write the
    summary, and tidy the local images and run folders."""
    version = summary.version
    if summary.seconds:
        stages = {stage: summary.times(stage) for stage in summary.seconds}
        flow_runs = {"pipeline": str(flow_run.ui_url or flow_run.id)}
        update_release(settings, version, {"stages": stages, "flow_runs": flow_runs})
    record_summary(summary, settings.run_dir(version))
    tidy_local(settings, version)


def _candidate(settings: PipelineSettings, version: str) -> Path:
    """The stored candidate's bundle, after checking its release record says it passed the gate."""
    record = read_release(settings, version)
    if not record.gate.passed:
        raise ConfigurationError(f"{version} did not pass the quality gate ({record.outcome}): it cannot be released")
    bundle_dir = model_bundle_to_use(settings, None, version)
    update_release(settings, version, {"stages": stage_times("train", "candidate reused")})
    return bundle_dir


if __name__ == "__main__":
    train_test_publish_deploy()
