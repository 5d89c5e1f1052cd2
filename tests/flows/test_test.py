"""The `test` flow: both suites with coverage against a given model, reports on S3, red suites fail the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.schemas.objects import StateType

from flows.test import TestOutcome, run_test_suites
from oncology_pipeline.errors import SuiteFailed
from tests.support.models import train_bundle
from tests.support.prefect_runs import artifacts, task_runs
from tests.support.stacks import Stack, bucket_keys

VERSION = "20261125T020000Z-0123abcd"
SMALL_UNIT_SUITE = "tests/oncology_model/test_datamodel.py"


def test_suites_run_against_the_model_and_coverage_lands_in_the_metrics_bucket(
    stack: Stack, model_bundle_dir: Path
) -> None:
    overrides = {**stack.overrides, "unit_tests": SMALL_UNIT_SUITE}
    state = run_test_suites(version=VERSION, model_dir=model_bundle_dir, overrides=overrides, return_state=True)
    assert state.type is StateType.COMPLETED
    outcome: TestOutcome = state.result()
    bucket = stack.settings.metrics_bucket
    unit_key = f"trainer/unittest-coverage/unittest-coverage-{VERSION}.json"
    model_key = f"trainer/test-coverage/test-coverage-{VERSION}.json"
    assert outcome.s3_uris == [f"s3://{bucket}/{unit_key}", f"s3://{bucket}/{model_key}"]
    for name, key in (("unittest-coverage", unit_key), ("test-coverage", model_key)):
        report = json.loads(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert "oncology_model/datamodel.py" in report["files"]
        assert outcome.coverage[name] == round(report["totals"]["percent_covered"], 1) > 0
    assert outcome.tests["unittest-coverage"] > 50 and outcome.tests["test-coverage"] >= 18
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    keys = {a.key for a in artifacts(run_id)}
    assert {"unittest-coverage-per-module", "test-coverage-per-module", "coverage-reports-objects"} <= keys
    table = next(a for a in artifacts(run_id) if a.key == "test-coverage-per-module")
    assert "oncology\\\\_model/classifier.py" in str(table.data) and "TOTAL" in str(table.data)  # markdown-escaped


def test_a_red_model_suite_fails_the_run_after_uploading_its_coverage(
    stack: Stack, real_csv: bytes, tmp_path: Path
) -> None:
    rows = real_csv.decode().splitlines()  # every fourth label flipped: the recorded metrics miss the gate
    noisy = [r if i % 4 else r[:-1] + ("4" if r.endswith("2") else "2") for i, r in enumerate(rows)]
    weak = tmp_path / "weak"
    train_bundle(("\n".join(noisy) + "\n").encode(), weak, VERSION)
    overrides = {**stack.overrides, "unit_tests": SMALL_UNIT_SUITE}
    state = run_test_suites(version=VERSION, model_dir=weak, overrides=overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(SuiteFailed, match="test-coverage"):
        state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert runs["upload_reports"].state_type is StateType.COMPLETED
    assert runs["check_test_results"].state_type is StateType.FAILED
    assert f"trainer/test-coverage/test-coverage-{VERSION}.json" in bucket_keys(stack.s3, stack.settings.metrics_bucket)
