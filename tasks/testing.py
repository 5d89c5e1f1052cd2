"""Test stage: the unit suite and the model suite against the trained model, side by side, with coverage."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from oncology_pipeline.errors import SuiteFailed
from oncology_pipeline.reports import coverage_rows, suites_markdown
from oncology_pipeline.settings import PipelineSettings
from oncology_pipeline.testsuites import Suite, SuiteResult, run_suites

UNIT, MODEL = "unittest-coverage", "test-coverage"


def nightly_suites(settings: PipelineSettings, model_dir: Path) -> list[Suite]:
    """The unit suite (the code the model ships with) and the model suite (the bundle in `model_dir`)."""
    unit_why = PipelineSettings.model_fields["unit_tests"].description or ""
    model_why = PipelineSettings.model_fields["model_tests"].description or ""
    return [
        Suite(UNIT, settings.unit_tests, unit_why),
        Suite(MODEL, settings.model_tests, model_why, {"ONCOLOGY_MODEL_DIR": str(model_dir.resolve())}),
    ]


@task(name="run_test_suites_with_coverage", cache_policy=NO_CACHE)
def run_test_suites_with_coverage(settings: PipelineSettings, model_dir: Path, out_dir: Path) -> list[SuiteResult]:
    """Both suites at once, each in its own pytest process; coverage JSON for each, a report of what ran and why."""
    log = get_run_logger()
    suites = nightly_suites(settings, model_dir)
    results = run_suites(suites, out_dir, cwd=Path.cwd(), timeout=settings.test_timeout_seconds)
    for result in results:
        log.info(
            "%s: %d tests, %d failed, %d errors, %d skipped in %.1f s; coverage %.1f %%",
            result.name,
            result.tests,
            result.failures,
            result.errors,
            result.skipped,
            result.seconds,
            result.percent_covered,
        )
        if not result.passed:
            log.error("%s failed (exit %d):\n%s", result.name, result.returncode, result.output_tail)
        create_table_artifact(
            table=coverage_rows(result.coverage),
            key=f"{result.name}-per-module",
            description=f"{result.name}: coverage per module ({result.tests} tests)",
        )
    create_markdown_artifact(
        markdown=suites_markdown(suites, results), key="test-suites", description="What the test stage ran, and why"
    )
    return results


@task(name="check_test_results", cache_policy=NO_CACHE)
def check_test_results(results: list[SuiteResult]) -> None:
    """Fail the run when any suite is red."""
    red = [f"{r.name} ({r.failures} failed, {r.errors} errors, exit {r.returncode})" for r in results if not r.passed]
    if red:
        raise SuiteFailed("test suites failed: " + "; ".join(red) + ": see the task log for the output")
