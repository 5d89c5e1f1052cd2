"""Flow `train-test-publish-deploy`: the whole nightly pipeline, one version through every stage.

The model becomes production only after its tests pass; the run stops before publishing when the gate
rejects the model or a test suite fails, and before deploying when publish fails. The summary artifact
says what ran, what was skipped and why.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.deploy import deploy
from flows.publish import publish
from flows.test import run_test_suites
from flows.train import train
from oncology_pipeline.errors import RolloutFailed
from oncology_pipeline.settings import load_settings
from oncology_pipeline.summary import PipelineSummary
from tasks.runs import stamp_run
from tasks.summary import record_summary
from tasks.training import promote_model


@flow(name="train-test-publish-deploy", log_prints=False)
def train_test_publish_deploy(
    version: str | None = None,
    publish_image: bool = True,
    deploy_image: bool = True,
    overrides: dict[str, Any] | None = None,
) -> PipelineSummary:
    """Train, test, publish and deploy one model version; `publish_image`/`deploy_image` turn off the last stages."""
    settings = load_settings(overrides)
    version = stamp_run("train-test-publish-deploy", version)
    summary = PipelineSummary(version=version)
    try:
        trained = summary.run_stage("train", train, version=version, promote=False, overrides=overrides)
        summary.stages["train"] = "model approved by the quality gate"
        summary.metrics, summary.gate, summary.s3_uris = trained.metrics, trained.gate, list(trained.s3_uris)

        tested = summary.run_stage(
            "test", run_test_suites, version=version, model_dir=trained.bundle_dir, overrides=overrides
        )
        pointer = promote_model(settings, version)
        summary.stages["test"] = ", ".join(f"{n}: {tested.tests[n]} tests, {c} %" for n, c in tested.coverage.items())
        summary.stages["train"] += "; promoted to production after the tests passed"
        summary.coverage, summary.s3_uris = tested.coverage, [*summary.s3_uris, *tested.s3_uris, pointer.uri]

        if not publish_image:
            summary.skip({"publish": "publish_image=False", "deploy": "no image: publish was skipped"})
            return summary
        summary.image = summary.run_stage(
            "publish", publish, version=version, bundle_dir=trained.bundle_dir, overrides=overrides
        )
        summary.stages["publish"] = f"pushed {summary.image}"

        if not deploy_image:
            summary.skip({"deploy": "deploy_image=False"})
            return summary
        summary.rollout = summary.run_stage("deploy", deploy, image=summary.image, version=version, overrides=overrides)
        summary.stages["deploy"] = summary.rollout or "rolled out"
        return summary
    except RolloutFailed as failure:
        summary.rollout = str(failure)
        raise
    finally:
        record_summary(summary, settings.run_dir(version))


if __name__ == "__main__":
    train_test_publish_deploy()
