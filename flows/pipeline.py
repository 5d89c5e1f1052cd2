"""Flow `train-test-publish-deploy`: the whole nightly pipeline, one version through every stage.

It stops before publishing when the gate rejects the model or a test suite fails, and before deploying
when publish fails; the summary artifact says what ran, what was skipped and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect import flow

from flows.deploy import deploy
from flows.publish import publish
from flows.test import run_test_suites
from flows.train import train
from oncology_pipeline.settings import load_settings
from oncology_pipeline.summary import PipelineSummary
from tasks.runs import stamp_run
from tasks.summary import record_summary

STAGES = ("train", "test", "publish", "deploy")


def _stage(summary: PipelineSummary, stage: str, subflow: Callable[..., Any], **parameters: Any) -> Any:
    """Run one stage's flow and time it; on failure, mark the later stages skipped and re-raise."""
    start = time.perf_counter()
    try:
        return subflow(**parameters)
    except BaseException as exc:
        summary.stages[stage] = f"FAILED: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        for later in STAGES[STAGES.index(stage) + 1 :]:
            summary.skipped.setdefault(later, f"{stage} failed")
        raise
    finally:
        summary.seconds[stage] = round(time.perf_counter() - start, 1)


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
        trained = _stage(summary, "train", train, version=version, overrides=overrides)
        summary.stages["train"] = "model approved and promoted to production"
        summary.metrics, summary.gate, summary.s3_uris = trained.metrics, trained.gate, list(trained.s3_uris)

        tested = _stage(
            summary, "test", run_test_suites, version=version, model_dir=trained.bundle_dir, overrides=overrides
        )
        summary.stages["test"] = ", ".join(f"{n}: {tested.tests[n]} tests, {c} %" for n, c in tested.coverage.items())
        summary.coverage, summary.s3_uris = tested.coverage, summary.s3_uris + tested.s3_uris

        if not publish_image:
            summary.skipped |= {"publish": "publish_image=False", "deploy": "no image: publish was skipped"}
            return summary
        summary.image = _stage(
            summary, "publish", publish, version=version, bundle_dir=trained.bundle_dir, overrides=overrides
        )
        summary.stages["publish"] = f"pushed {summary.image}"

        if not deploy_image:
            summary.skipped["deploy"] = "deploy_image=False"
            return summary
        summary.rollout = _stage(summary, "deploy", deploy, image=summary.image, version=version, overrides=overrides)
        summary.stages["deploy"] = summary.rollout or "rolled out"
        return summary
    except BaseException as exc:
        if "deploy" in summary.stages and summary.stages["deploy"].startswith("FAILED"):
            summary.rollout = f"rolled back: {exc}"
        raise
    finally:
        record_summary(summary, settings.run_dir(version))


if __name__ == "__main__":
    train_test_publish_deploy()
