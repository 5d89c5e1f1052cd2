"""Test stage: the unit suite and the model/integration suite against the trained model, with coverage."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from oncology_pipeline.errors import SuiteFailed
from oncology_pipeline.reports import coverage_rows
from oncology_pipeline.settings import PipelineSettings
from oncology_pipeline.testsuites import SuiteResult, run_suite

UNIT, MODEL = "unittest-coverage", "test-coverage"


@task(name="run_test_suites_with_coverage", tags=["test"], cache_policy=NO_CACHE)
def run_test_suites_with_coverage(settings: PipelineSettings, model_dir: Path, out_dir: Path) -> list[SuiteResult]:
    """Unit tests, then model and integration tests against `model_dir`; coverage JSON for each."""
    log = get_run_logger()
    results = []
    for name, paths, env in (
        (UNIT, settings.unit_tests.split(), {}),
        (MODEL, settings.model_tests.split(), {"ONCOLOGY_MODEL_DIR": str(model_dir.resolve())}),
    ):
        result = run_suite(name, paths, out_dir, cwd=Path.cwd(), env=env, timeout=settings.test_timeout_seconds)
        log.info(
            "%s: %d tests, %d failed, %d errors, %d skipped in %.1f s; coverage %.1f %%",
            name,
            result.tests,
            result.failures,
            result.errors,
            result.skipped,
            result.seconds,
            result.percent_covered,
        )
        if not result.passed:
            log.error("%s failed (exit %d):\n%s", name, result.returncode, result.output_tail)
        create_table_artifact(
            table=coverage_rows(result.coverage),
            key=f"{name}-per-module",
            description=f"{name}: coverage per module ({result.tests} tests)",
        )
        results.append(result)
    return results


@task(name="check_test_results", tags=["test"], cache_policy=NO_CACHE)
def check_test_results(results: list[SuiteResult]) -> None:
    """Fail the run when any suite is red."""
    red = [f"{r.name} ({r.failures} failed, {r.errors} errors, exit {r.returncode})" for r in results if not r.passed]
    if red:
        raise SuiteFailed("test suites failed: " + "; ".join(red) + ": see the task log for the output")
