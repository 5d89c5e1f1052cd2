"""Flow `train-test-publish-deploy`: the whole nightly pipeline, one version through every stage.

The run stops before publishing when the gate rejects the model or a test suite fails, and before deploying
when publish fails. The model becomes production only when the deploy stage has verified the running service
(see flows/deploy.py). Given `model_version`, it releases an existing candidate without retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.deploy import deploy
from flows.publish import publish
from flows.test import run_test_suites
from flows.train import train
from oncology_pipeline.errors import ConfigurationError, RolloutFailed
from oncology_pipeline.s3store import POINTER_FILE
from oncology_pipeline.settings import PipelineSettings, load_settings
from oncology_pipeline.summary import PipelineSummary
from tasks.releases import read_release, record_uri, stage_times, update_release
from tasks.runs import stamp_run
from tasks.summary import record_summary
from tasks.training import model_bundle_to_use


@flow(name="train-test-publish-deploy", log_prints=False)
def train_test_publish_deploy(
    version: str | None = None,
    model_version: str | None = None,
    publish_image: bool = True,
    deploy_image: bool = True,
    overrides: dict[str, Any] | None = None,
) -> PipelineSummary:
    """Train (or take a stored candidate), test, publish and deploy one model version.

    Args:
        version: the version to stamp on a new model (default: the run's UTC start and flow-run id).
        model_version: release this stored candidate instead of training a new one.
        publish_image: build and push the web-service image.
        deploy_image: roll the image out, verify it and make it production.
        overrides: settings for this run (see oncology_pipeline.settings.PipelineSettings).
    """
    settings = load_settings(overrides)
    version = stamp_run("train-test-publish-deploy", model_version or version)
    summary = PipelineSummary(version=version)
    try:
        if model_version:
            bundle_dir = _candidate(settings, version)
            summary.stages["train"] = f"candidate {version} taken from S3 (not retrained)"
        else:
            trained = summary.run_stage("train", train, version=version, overrides=overrides)
            summary.stages["train"] = "model approved by the quality gate: a candidate"
            summary.metrics, summary.gate, summary.s3_uris = trained.metrics, trained.gate, list(trained.s3_uris)
            bundle_dir = trained.bundle_dir

        tested = summary.run_stage("test", run_test_suites, version=version, model_dir=bundle_dir, overrides=overrides)
        summary.stages["test"] = ", ".join(f"{n}: {tested.tests[n]} tests, {c} %" for n, c in tested.coverage.items())
        summary.coverage, summary.s3_uris = tested.coverage, [*summary.s3_uris, *tested.s3_uris]
        update_release(
            settings, version, {"tests": {"tests": tested.tests, "coverage": tested.coverage}, "outcome": "tested"}
        )

        if not publish_image:
            summary.skip({"publish": "publish_image=False", "deploy": "no image: publish was skipped"})
            return summary
        summary.image = summary.run_stage(
            "publish", publish, version=version, bundle_dir=bundle_dir, overrides=overrides
        )
        summary.stages["publish"] = f"pushed {summary.image}"
        repository, digest = summary.image.split("@")
        update_release(
            settings,
            version,
            {"image": {"repository": repository, "tag": version, "digest": digest, "reference": summary.image}},
        )

        if not deploy_image:
            summary.skip({"deploy": "deploy_image=False"})
            return summary
        summary.rollout = summary.run_stage("deploy", deploy, image=summary.image, version=version, overrides=overrides)
        summary.stages["deploy"] = summary.rollout or "rolled out"
        pointer = f"s3://{settings.model_bucket}/{settings.model_prefix}/{POINTER_FILE}"
        summary.s3_uris = [*summary.s3_uris, pointer, record_uri(settings, version)]
        return summary
    except RolloutFailed as failure:
        summary.rollout = str(failure)
        raise
    except Exception as failure:
        stage = next((s for s, outcome in summary.stages.items() if outcome.startswith("FAILED")), "pipeline")
        update_release(settings, version, {"outcome": f"failed at {stage}: {failure}"})
        raise
    finally:
        stages = {stage: summary.times(stage) for stage in summary.stages}
        runs = {"pipeline": str(flow_run.ui_url or flow_run.id)}
        update_release(settings, version, {"stages": stages, "flow_runs": runs})
        record_summary(summary, settings.run_dir(version))


def _candidate(settings: PipelineSettings, version: str) -> Path:
    """The stored candidate's bundle, after checking its release record says it passed the gate."""
    record = read_release(settings, version)
    if not record.gate.get("passed"):
        raise ConfigurationError(f"{version} did not pass the quality gate ({record.outcome}): it cannot be released")
    bundle_dir = model_bundle_to_use(settings, None, version)
    update_release(settings, version, {"stages": stage_times("train", "candidate reused")})
    return bundle_dir


if __name__ == "__main__":
    train_test_publish_deploy()
