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

import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from prefect import Flow, flow
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
from oncology_pipeline.settings import PipelineSettings, load_settings
from oncology_pipeline.summary import STAGES, PipelineSummary
from tasks.data import download_labelled_data, download_training_data
from tasks.fingerprint import fingerprint_inputs, plan_run, remember_fingerprint, report_no_change
from tasks.housekeeping import tidy_local
from tasks.releases import read_release, record_operator_action, record_uri, stage_times, update_release
from tasks.runs import run_name, stamp_run
from tasks.summary import record_summary
from tasks.training import model_bundle_to_use

FLOW_NAME = "train-test-publish-deploy"


class StageFailed(Exception):
    """A stage's flow run did not complete: the stage, and the exception it ended with."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"failed at {stage}: {cause}")
        self.stage, self.cause = stage, cause


@flow(
    name=FLOW_NAME,
    flow_run_name=run_name(FLOW_NAME, "model_version", "version"),
    log_prints=False,
    timeout_seconds=load_settings().pipeline_timeout_seconds,
)
def train_test_publish_deploy(
    version: str | None = None,
    model_version: str | None = None,
    publish_image: bool = True,
    deploy_image: bool = True,
    force: bool = False,
    overrides: dict[str, Any] | None = None,
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
    version = stamp_run(FLOW_NAME, model_version or version)
    summary = PipelineSummary(version=version)
    plan = Plan("resume", "model_version given: release that candidate", model_version) if model_version else None
    inputs: Fingerprint | None = None
    try:
        if plan is None:
            inputs = fingerprint_inputs(settings, download_training_data(settings), download_labelled_data(settings))
            plan = plan_run(settings, inputs, force)
        if publish_image and deploy_image:  # a run that may change the cluster first sees what it serves
            _reconcile(summary, settings)
        if inputs is not None:
            if plan.action in ("no-change", "held"):  # nothing to release; the cluster may have drifted
                why = plan.reason if plan.action == "held" else "no change: production was built from the same inputs"
                summary.skip(dict.fromkeys(STAGES, why))
                summary.rollout = report_no_change(plan, inputs, summary.reconcile if summary.drifts else None)
                return summary
            if plan.action == "resume" and plan.version:
                version = summary.version = stamp_run(FLOW_NAME, plan.version)
            else:
                update_release(settings, version, {"fingerprint": inputs.model_dump(mode="json")})
                remember_fingerprint(settings, inputs, version)

        if plan.action == "resume":
            bundle_dir = _stage(summary, settings, "train", partial(_candidate, settings), version=version)
            summary.stages["train"] = f"candidate {version} reused (not retrained): {plan.reason}"
        else:
            trained = _stage(summary, settings, "train", train, version=version, overrides=overrides)
            summary.stages["train"] = "model approved by the quality gate: a candidate"
            summary.metrics, summary.gate, summary.s3_uris = trained.metrics, trained.gate, list(trained.s3_uris)
            bundle_dir = trained.bundle_dir

        if plan.tested:
            summary.stages["test"] = f"passed in the earlier run of {version} (not re-run)"
        else:
            tested = _stage(
                summary, settings, "test", run_test_suites, version=version, model_dir=bundle_dir, overrides=overrides
            )
            summary.stages["test"] = ", ".join(
                f"{n}: {tested.tests[n]} tests, {c} %" for n, c in tested.coverage.items()
            )
            summary.coverage, summary.s3_uris = tested.coverage, [*summary.s3_uris, *tested.s3_uris]
            update_release(settings, version, releases.tested(tested.tests, tested.coverage))

        if not publish_image:
            summary.skip({"publish": "publish_image=False", "deploy": "no image: publish was skipped"})
            return summary
        if plan.image:
            summary.image = plan.image
            summary.stages["publish"] = f"pushed in the earlier run (not rebuilt): {plan.image}"
        else:
            summary.image = _stage(
                summary, settings, "publish", publish, version=version, bundle_dir=bundle_dir, overrides=overrides
            )
            summary.stages["publish"] = f"pushed {summary.image}"
            update_release(settings, version, releases.published(summary.image, version))

        if not deploy_image:
            summary.skip({"deploy": "deploy_image=False"})
            return summary
        summary.rollout = _stage(
            summary, settings, "deploy", deploy, image=summary.image, version=version, overrides=overrides
        )
        summary.stages["deploy"] = summary.rollout or "rolled out"
        if model_version:  # a person chose this version: the records say so
            record_operator_action(settings, "release", version, None)
        pointer = layout.uri(settings.model_bucket, layout.pointer_key(settings.model_prefix))
        summary.s3_uris = [*summary.s3_uris, pointer, record_uri(settings, version)]
        return summary
    except StageFailed as failure:
        if failure.stage == "deploy":  # the deploy flow wrote its outcome (rolled back, and why)
            summary.rollout = str(failure.cause)
        elif failure.stage != "reconcile":  # before any stage: this run's version has nothing to record
            update_release(settings, version, releases.failed(str(failure)))
        return Failed(message=str(failure), data=failure.cause)
    finally:
        if summary.seconds:  # the stages this run ran (a resumed run keeps the earlier run's times of the others)
            stages = {stage: summary.times(stage) for stage in summary.seconds}
            update_release(settings, version, {"stages": stages, "flow_runs": {"pipeline": _run_url()}})
        record_summary(summary, settings.run_dir(version))
        tidy_local(settings, version)


def _stage(summary: PipelineSummary, settings: PipelineSettings, stage: str, run: Any, **parameters: Any) -> Any:
    """Run one stage (a flow, within the stage time limit, or a plain step) and time it; StageFailed if it fails."""
    start = time.perf_counter()
    summary.started_at[stage] = datetime.now(UTC)
    try:
        if not isinstance(run, Flow):
            try:
                return run(**parameters)
            except Exception as exc:
                raise StageFailed(stage, exc) from exc
        limited: Flow[..., Any] = run.with_options(timeout_seconds=settings.stage_timeout_seconds)
        state = cast(State[Any], limited(**parameters, return_state=True))
        result = state.result(raise_on_failure=False)
        if state.name == "TimedOut":
            limit = settings.stage_timeout_seconds
            raise StageFailed(stage, TimeoutError(f"did not finish within {limit:g} s (stage_timeout_seconds)"))
        if not state.is_completed():
            cause = result if isinstance(result, BaseException) else RuntimeError(state.message or state.name)
            raise StageFailed(stage, cause)
        return result
    except StageFailed as failure:
        summary.stages[stage] = f"FAILED: {str(failure.cause).splitlines()[0] if str(failure.cause) else stage}"
        for later in STAGES[STAGES.index(stage) + 1 :]:
            summary.skipped.setdefault(later, f"{stage} failed")
        raise
    finally:
        summary.seconds[stage] = round(time.perf_counter() - start, 1)


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


def _run_url() -> str:
    return str(flow_run.ui_url or flow_run.id)


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
