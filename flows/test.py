"""Flow `test`: the test suites with coverage, uploaded to the metrics bucket (the seed's `make test`
and `make upload.monitoring`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oncology_pipeline import layout
from oncology_pipeline.settings import Overrides, load_settings
from tasks.runs import pipeline_flow, stamp_run
from tasks.testing import MODEL, UNIT, check_test_results, run_test_suites_with_coverage
from tasks.training import model_bundle_to_use, upload_reports


@dataclass(frozen=True)
class TestOutcome:
    """Coverage per suite (percent) and the S3 objects written."""

    __test__ = False  # not a pytest test class

    coverage: dict[str, float]
    tests: dict[str, int]
    s3_uris: list[str]


@pipeline_flow("test", "version")
def run_test_suites(
    version: str | None = None,
    model_dir: Path | None = None,
    model_version: str | None = None,
    overrides: Overrides = None,
) -> TestOutcome:
    """Run the unit suite and the model suite (against `model_dir`, else `model_version` or production from S3)."""
    settings = load_settings(overrides)
    version = stamp_run(version)
    model = model_bundle_to_use(settings, model_dir, model_version)
    results = run_test_suites_with_coverage(settings, model, settings.run_dir(version) / "coverage")
    coverage = {r.name: r.coverage for r in results}
    written = upload_reports(
        settings,
        {
            layout.unit_coverage_key(version): coverage[UNIT],
            layout.model_coverage_key(version): coverage[MODEL],
        },
        "Coverage reports",
    )
    check_test_results(results)
    return TestOutcome(
        coverage={r.name: round(r.percent_covered, 1) for r in results},
        tests={r.name: r.tests for r in results},
        s3_uris=[o.uri for o in written],
    )


if __name__ == "__main__":
    run_test_suites()
