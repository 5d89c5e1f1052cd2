"""The pipeline summary: an artifact in the UI and summary.json in the run directory."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from oncology_pipeline.summary import PipelineSummary


@task(name="record_summary", cache_policy=NO_CACHE)
def record_summary(summary: PipelineSummary, run_dir: Path) -> Path:
    """Publish the summary as the `pipeline-summary` artifact and write it to `run_dir/summary.json`."""
    create_markdown_artifact(markdown=summary.markdown(), key="pipeline-summary", description="Pipeline summary")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "summary.json"
    path.write_text(summary.model_dump_json(indent=2))
    outcomes = {**summary.stages, **{stage: f"skipped: {why}" for stage, why in summary.skipped.items()}}
    get_run_logger().info("summary: %s", "; ".join(f"{stage} {outcome}" for stage, outcome in outcomes.items()))
    return path
