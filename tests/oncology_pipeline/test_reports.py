"""Human-readable views: validation report, metrics, gate decision, coverage, links, the history row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from oncology_model.bundle import ModelMetadata
from oncology_model.config import TrainingConfig
from oncology_model.data import ValidationReport, combine, parse_csv
from oncology_model.evaluation import Estimate, Evaluation, GateDecision
from oncology_pipeline.reports import (
    coverage_rows,
    deploy_markdown,
    gate_markdown,
    history_row,
    metrics_rows,
    objects_rows,
    validation_markdown,
)
from oncology_pipeline.s3store import S3Object
from tests.support.data import csv_bytes, synthetic_rows

VERSION = "20261125T020000Z-3fa85f64"


@pytest.fixture
def report() -> ValidationReport:
    """A real validation report: 40 rows, a bad score on line 5, a bad class on line 10, one '?' bare nuclei."""
    rows = synthetic_rows(40)
    rows[4][3] = "x"
    rows[9][10] = 3
    rows[12][6] = "?"
    return parse_csv(csv_bytes(rows), max_invalid_share=0.2).report


@pytest.fixture
def evaluation() -> Evaluation:
    return Evaluation(
        n_test=140,
        threshold=0.25,
        metrics={
            "accuracy": Estimate(value=0.964, ci_low=0.93, ci_high=0.99),
            "recall": Estimate(value=0.98, ci_low=0.94, ci_high=1.0),
            "roc_auc": Estimate(value=0.995, ci_low=0.988, ci_high=0.999),
        },
    )


def test_validation_markdown_lists_counts_and_dropped_rows_by_row_number(report: ValidationReport) -> None:
    text = validation_markdown(report, "s3://oncology-training-data/wisconsin.data")
    lines = text.splitlines()

    assert lines[0] == "# Data validation: s3://oncology-training-data/wisconsin.data"
    assert "- rows read: **40**, kept: **38**, dropped: **2**" in lines
    assert "- class balance: benign 19, malignant 19" in lines
    assert "- missing values kept for imputation: bare_nuclei 1" in lines
    assert "- duplicate sample ids: 0; rows identical to an earlier row: 0" in lines
    assert f"- sha256: `{report.sha256}`" in lines
    table = lines[lines.index("| row | field | reason |") :]
    assert table == [
        "| row | field | reason |",
        "|---:|---|---|",
        "| 5 | uniformity_of_cell_shape | must be an integer, got 'x' |",
        "| 10 | class | class must be 2 (benign) or 4 (malignant), got 3 |",
    ]


def test_validation_markdown_of_several_files_lists_each_and_names_the_file_of_every_problem() -> None:
    rows = synthetic_rows(40)
    labelled: list[list[object]] = [[10**15 + i, *rows[0][1:]] for i in range(9)] + [[rows[1][0], *rows[0][1:]]]
    labelled[3][-1] = 3
    training = parse_csv(csv_bytes(rows), source="s3://d/wisconsin.data")
    cases = parse_csv(csv_bytes(labelled), 0.1, source="s3://d/labelled/labelled-1.csv", need_both_classes=False)
    rows[2][1] = 11
    bad = parse_csv(csv_bytes(rows), 0.1, source="s3://d/labelled/labelled-2.csv", need_both_classes=False)

    lines = validation_markdown(combine([training, cases, bad]).report, "three files").splitlines()

    files = lines[lines.index("| file | rows read | rows kept | sha256 |") + 2 :][:3]
    assert [line.split(" | ")[:3] for line in files] == [
        ["| s3://d/wisconsin.data", "40", "40"],
        ["| s3://d/labelled/labelled-1.csv", "10", "9"],
        ["| s3://d/labelled/labelled-2.csv", "40", "39"],
    ]
    assert f"| {rows[1][0]} | s3://d/wisconsin.data row 2, s3://d/labelled/labelled-1.csv row 10, " in "\n".join(lines)
    assert lines[-2:] == [
        "| s3://d/labelled/labelled-1.csv | 4 | class | class must be 2 (benign) or 4 (malignant), got 3 |",
        "| s3://d/labelled/labelled-2.csv | 3 | clump_thickness | must be between 1 and 10, got 11 |",
    ]


def test_validation_markdown_without_drops_has_no_table() -> None:
    report = parse_csv(csv_bytes(synthetic_rows(20))).report

    text = validation_markdown(report, "local.csv")

    assert "dropped: **0**" in text
    assert "- missing values kept for imputation: none" in text
    assert "| row |" not in text


def test_validation_markdown_lists_at_most_fifty_dropped_rows() -> None:
    rows = synthetic_rows(200)
    for row in rows[:60]:
        row[10] = 3
    report = parse_csv(csv_bytes(rows), max_invalid_share=0.5).report

    lines = validation_markdown(report, "big.csv").splitlines()

    assert "- rows read: **200**, kept: **140**, dropped: **60**" in lines
    table_rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert len(table_rows) == 50
    assert table_rows[0].startswith("| 1 | class |")
    assert table_rows[-1].startswith("| 50 | class |")


def test_validation_markdown_counts_duplicates() -> None:
    rows = synthetic_rows(20)
    rows.append(list(rows[3]))
    report = parse_csv(csv_bytes(rows)).report

    text = validation_markdown(report, "dups.csv")

    assert "- duplicate sample ids: 1; rows identical to an earlier row: 1" in text


def test_metrics_rows_one_per_metric_with_its_interval(evaluation: Evaluation) -> None:
    assert metrics_rows(evaluation) == [
        {"metric": "accuracy", "value": 0.964, "ci_low": 0.93, "ci_high": 0.99},
        {"metric": "recall", "value": 0.98, "ci_low": 0.94, "ci_high": 1.0},
        {"metric": "roc_auc", "value": 0.995, "ci_low": 0.988, "ci_high": 0.999},
    ]


def test_gate_markdown_passed_with_a_champion() -> None:
    decision = GateDecision(
        passed=True,
        reasons=["recall 0.9800 >= minimum 0.9500", "recall 0.9800 vs champion 20261124T020000Z-00000001 0.9700"],
        champion_version="20261124T020000Z-00000001",
    )

    assert gate_markdown(decision, VERSION) == "\n".join(
        [
            f"# Quality gate for {VERSION}: PASSED: stored as a candidate (production only after a verified deploy)",
            "",
            "Champion (the serving model): 20261124T020000Z-00000001",
            "",
            "- recall 0.9800 >= minimum 0.9500",
            "- recall 0.9800 vs champion 20261124T020000Z-00000001 0.9700",
        ]
    )


def test_gate_markdown_failed_first_model() -> None:
    decision = GateDecision(passed=False, reasons=["recall 0.9000 < minimum 0.9500"])

    lines = gate_markdown(decision, VERSION).splitlines()

    assert lines[0] == f"# Quality gate for {VERSION}: FAILED: not stored"
    assert "Champion (the serving model): none (first model)" in lines
    assert lines[-1] == "- recall 0.9000 < minimum 0.9500"


COVERAGE: dict[str, Any] = {
    "meta": {"format": 3, "version": "7.6.0"},
    "files": {
        "oncology_model/training.py": {
            "summary": {"num_statements": 80, "missing_lines": 4, "covered_lines": 76, "percent_covered": 95.0}
        },
        "oncology_model/data.py": {
            "summary": {"num_statements": 120, "missing_lines": 7, "covered_lines": 113, "percent_covered": 94.16666}
        },
    },
    "totals": {"num_statements": 200, "missing_lines": 11, "covered_lines": 189, "percent_covered": 94.5},
}


def test_coverage_rows_per_module_sorted_then_the_total() -> None:
    assert coverage_rows(COVERAGE) == [
        {"module": "oncology\\_model/data.py", "statements": 120, "missing": 7, "covered_percent": 94.2},
        {"module": "oncology\\_model/training.py", "statements": 80, "missing": 4, "covered_percent": 95.0},
        {"module": "TOTAL", "statements": 200, "missing": 11, "covered_percent": 94.5},
    ]


def test_coverage_rows_of_an_empty_report() -> None:
    assert coverage_rows({}) == []


def test_objects_are_s3_uris_with_size_and_etag_never_links() -> None:
    written = [S3Object("b", "models/v1/model.skops", 1234, '"abc"', "v9"), S3Object("b", "x/__init__.py", 5, '"d"')]
    assert objects_rows(written) == [
        {"object": "s3://b/models/v1/model.skops", "bytes": 1234, "etag": "abc", "version": "v9"},
        {"object": "s3://b/x/\\_\\_init\\_\\_.py", "bytes": 5, "etag": "d", "version": "-"},
    ]


def _metadata(evaluation: Evaluation, gate: GateDecision | None) -> dict[str, Any]:
    """A bundle's metadata as the pipeline hands it to history_row (ModelMetadata dumped as JSON)."""
    metadata = ModelMetadata(
        model_version=VERSION,
        created_at=datetime(2026, 11, 25, 2, 5, tzinfo=UTC),
        data_sha256="a" * 64,
        rows={"read": 699, "kept": 683, "train": 546, "test": 137},
        config=TrainingConfig(estimator="random_forest"),
        evaluation=evaluation,
        gate=gate,
    )
    return metadata.model_dump(mode="json")


def test_history_row_holds_version_data_metrics_with_intervals_and_the_gate(evaluation: Evaluation) -> None:
    gate = GateDecision(passed=True, reasons=["ok"], champion_version="20261124T020000Z-00000001")

    row = history_row(_metadata(evaluation, gate))

    assert row == {
        "model_version": VERSION,
        "created_at": "2026-11-25T02:05:00Z",
        "estimator": "random_forest",
        "data_sha256": "a" * 64,
        "rows_kept": 683,
        "accuracy": 0.964,
        "accuracy_ci_low": 0.93,
        "accuracy_ci_high": 0.99,
        "recall": 0.98,
        "recall_ci_low": 0.94,
        "recall_ci_high": 1.0,
        "roc_auc": 0.995,
        "roc_auc_ci_low": 0.988,
        "roc_auc_ci_high": 0.999,
        "gate_passed": True,
        "champion_version": "20261124T020000Z-00000001",
    }
    assert list(row)[:5] == ["model_version", "created_at", "estimator", "data_sha256", "rows_kept"]
    assert list(row)[-2:] == ["gate_passed", "champion_version"]


def test_history_row_of_a_first_model_and_of_a_bundle_without_gate(evaluation: Evaluation) -> None:
    first = history_row(_metadata(evaluation, GateDecision(passed=False, reasons=["recall too low"])))
    assert first["gate_passed"] is False
    assert first["champion_version"] == ""

    ungated = history_row(_metadata(evaluation, None))
    assert ungated["gate_passed"] is None
    assert ungated["champion_version"] == ""


def test_the_deploy_artifact_names_each_deployment_old_and_new_image_and_the_outcome() -> None:
    old, new = "r.example/oncology@sha256:" + "a" * 64, "r.example/oncology@sha256:" + "b" * 64
    cluster = {"namespace": "oncology", "deployments": [{"name": "web", "previous_image": old, "new_image": new}]}
    done = deploy_markdown("v2", new, cluster, {"outcome": "rolled out", "detail": "web (revision 3)"}, "2 pods ok")
    assert done.startswith("# Deploy v2: production is now v2")
    assert "| web | oncology | `oncology@sha256:aaaaaaaaaaaa` | `oncology@sha256:bbbbbbbbbbbb` |" in done
    assert "Rollout: web (revision 3)" in done and "Verification: 2 pods ok" in done and "Rollback: none needed" in done
    undone = {"outcome": "rolled back", "reason": "ImagePullBackOff", "restored": "web runs the old image again"}
    failed = deploy_markdown("v2", new, cluster, undone, "not reached")
    assert failed.startswith("# Deploy v2: v2 rolled back") and "Rollout: ImagePullBackOff" in failed
    assert "Rollback: rolled back: web runs the old image again" in failed


def test_the_summary_table_keeps_one_short_line_per_stage() -> None:
    from oncology_pipeline.summary import CELL_WIDTH, PipelineSummary

    long = "FAILED: x" * 40
    summary = PipelineSummary(version="v1", stages={"train": "ok", "publish": "not ready | logs:\nTraceback"})
    summary.stages["test"] = long
    rows = [line for line in summary.markdown().splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| train", "| test", "| publish", "| deploy"]
    assert "not ready \\| logs:" in rows[2] and "Traceback" not in summary.markdown()
    assert len(rows[1]) < CELL_WIDTH + 30 and rows[1].count("…") == 1


def test_the_summary_prints_confusion_counts_as_integers() -> None:
    from oncology_pipeline.summary import PipelineSummary

    summary = PipelineSummary(version="v1", metrics={"accuracy": 0.97142857, "tn": 89.0, "fp": 3.0, "tp": 47.0})
    assert "Hold-out metrics: accuracy 0.9714, tn 89, fp 3, tp 47" in summary.markdown()


def test_the_release_record_lists_its_stages_in_pipeline_order() -> None:
    from oncology_pipeline.releases import ReleaseRecord, StageTimes

    stages = {name: StageTimes(outcome=f"{name} done", seconds=1.0) for name in ("deploy", "train", "publish", "test")}
    rows = [
        line
        for line in ReleaseRecord(model_version="v1", stages=stages).markdown().splitlines()
        if line.endswith(" | 1.0 |")
    ]
    assert [row.split(" | ")[0] for row in rows] == ["| train", "| test", "| publish", "| deploy"]
