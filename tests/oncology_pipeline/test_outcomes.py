"""Outcome files: every problem reported with file, row and rule, never used; duplicates once; conflicts not at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from oncology_model.datamodel import Prediction
from oncology_pipeline.outcomes import MAX_PROBLEMS, Rule, read_outcomes
from oncology_pipeline.reports import outcomes_markdown

PREDICTED = datetime(2026, 12, 3, 19, 55, 1, tzinfo=UTC)
KNOWN = {"req-1": PREDICTED, "req-2": PREDICTED, "batch:7/0": PREDICTED, "batch:7/1": PREDICTED}
HEADER = "request_id,diagnosis,confirmed_at"
GOOD = "batch:7/1,4,2026-12-05T10:00:00Z"


def csv_file(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("row", "rule", "detail"),
    [
        ("req-1,3,2026-12-05T10:00:00Z", Rule.BAD_DIAGNOSIS, "got '3'"),
        ("req-1,malignant,2026-12-05T10:00:00Z", Rule.BAD_DIAGNOSIS, "got 'malignant'"),
        ("req-1,2,next tuesday", Rule.BAD_CONFIRMED_AT, "got 'next tuesday'"),
        ("req-1,2,2026-12-05T10:00:00", Rule.BAD_CONFIRMED_AT, "no time zone"),
        ("req-1,2,2026-12-03T19:55:00Z", Rule.CONFIRMED_BEFORE_PREDICTION, "before its prediction"),
        ("req-999,2,2026-12-05T10:00:00Z", Rule.UNKNOWN_CASE, "'req-999' is not in the prediction log"),
        ("verify-v1-0a1b2c3d/0,4,2026-12-05T10:00:00Z", Rule.VERIFICATION_CASE, "is a deploy verification request"),
        ("req 1,2,2026-12-05T10:00:00Z", Rule.BAD_CASE_ID, "got 'req 1'"),
        ("req-1/x,2,2026-12-05T10:00:00Z", Rule.BAD_CASE_ID, "got 'req-1/x'"),
        ("req-1,2", Rule.WRONG_COLUMNS, "2 columns, expected 3"),
    ],
)
def test_a_bad_row_is_reported_with_file_row_and_rule_and_not_used(row: str, rule: Rule, detail: str) -> None:
    used, report = read_outcomes([("outcomes/a.csv", csv_file(HEADER, GOOD, "", row))], KNOWN)

    assert list(used) == ["batch:7/1"]
    assert used["batch:7/1"].diagnosis is Prediction.MALIGNANT
    assert used["batch:7/1"].confirmed_at == datetime(2026, 12, 5, 10, tzinfo=UTC)
    [problem] = report.problems
    assert (problem.file, problem.row, problem.rule) == ("outcomes/a.csv", 4, rule)  # line 3 is blank
    assert detail in problem.detail
    assert {k: n for k, n in report.counts.items() if n} == {rule: 1}
    assert (report.files[0].rows_read, report.files[0].rows_used, report.files[0].refused) == (2, 1, None)


@pytest.mark.parametrize(
    ("content", "rule", "row"),
    [
        (csv_file(HEADER, GOOD, "req-1,2,2026-12-05T10:00:00Z").replace(b"req-1", b"req-\xff"), Rule.NOT_UTF8, 3),
        ((HEADER + "\n").encode("utf-16"), Rule.NOT_UTF8, 1),
        (csv_file(HEADER, GOOD, 'req-1,"2,2026-12-05T10:00:00Z', "req-2,2,2026-12-05T10:00:00Z"), Rule.BROKEN_CSV, 3),
        (csv_file("case,diagnosis,confirmed_at", GOOD), Rule.WRONG_HEADER, 1),
        (csv_file(GOOD), Rule.WRONG_HEADER, 1),
        (b"\n\n", Rule.WRONG_HEADER, 1),
    ],
    ids=["not-utf8", "utf16", "unclosed-quote", "wrong-header", "no-header", "empty"],
)
def test_an_unreadable_file_is_refused_whole_and_the_others_still_count(content: bytes, rule: Rule, row: int) -> None:
    good = csv_file(HEADER, "req-2,2,2026-12-05T10:00:00+01:00")

    used, report = read_outcomes([("bad.csv", content), ("good.csv", good)], KNOWN)

    assert list(used) == ["req-2"]
    assert [(f.file, f.rows_read, f.rows_used, f.refused) for f in report.files] == [
        ("bad.csv", 0, 0, rule),
        ("good.csv", 1, 1, None),
    ]
    assert [(p.file, p.row, p.rule) for p in report.problems] == [("bad.csv", row, rule)]


def test_duplicates_are_used_once_and_counted_in_one_file_and_across_files() -> None:
    first = csv_file(HEADER, "req-1,2,2026-12-06T10:00:00Z", "req-1,2,2026-12-05T10:00:00Z")
    second = csv_file(HEADER, "req-1, 2 ,2026-12-07T10:00:00Z", "req-2,4,2026-12-05T10:00:00Z")

    used, report = read_outcomes([("a.csv", first), ("b.csv", second)], KNOWN)

    assert sorted(used) == ["req-1", "req-2"]
    assert (used["req-1"].file, used["req-1"].row) == ("a.csv", 3)  # the earliest confirmation
    assert report.counts[Rule.DUPLICATE] == 2
    assert [(p.file, p.row) for p in report.problems] == [("a.csv", 2), ("b.csv", 2)]
    assert [(f.rows_read, f.rows_used) for f in report.files] == [(2, 1), (2, 1)]
    assert report.cases_used == 2


def test_conflicting_diagnoses_use_none_of_the_rows_and_name_them_all() -> None:
    first = csv_file(HEADER, "req-1,4,2026-12-05T10:00:00Z", "req-2,2,2026-12-05T10:00:00Z")
    second = csv_file(HEADER, "req-1,2,2026-12-06T10:00:00Z", "req-1,4,2026-12-07T10:00:00Z")

    used, report = read_outcomes([("a.csv", first), ("b.csv", second)], KNOWN)

    assert list(used) == ["req-2"]
    assert report.conflicting_cases == 1
    assert report.counts[Rule.CONFLICTING_DIAGNOSIS] == 3
    assert report.counts[Rule.DUPLICATE] == 0
    assert [(p.file, p.row) for p in report.problems] == [("a.csv", 2), ("b.csv", 2), ("b.csv", 3)]
    assert "4 at a.csv row 2; 2 at b.csv row 2; 4 at b.csv row 3" in report.problems[0].detail
    assert [f.rows_used for f in report.files] == [1, 0]
    assert report.summary() == (
        "1 confirmed cases from 4 rows in 2 files (0 refused); 1 conflicting cases; problems: conflicting_diagnosis 3"
    )


def test_the_problem_list_is_capped_but_the_counts_are_not() -> None:
    rows = [f"unknown-{i},2,2026-12-05T10:00:00Z" for i in range(MAX_PROBLEMS + 30)]

    used, report = read_outcomes([("a.csv", csv_file(HEADER, *rows))], KNOWN)

    assert used == {}
    assert len(report.problems) == MAX_PROBLEMS
    assert report.problems[-1].row == MAX_PROBLEMS + 1
    assert report.counts[Rule.UNKNOWN_CASE] == MAX_PROBLEMS + 30


def test_outcomes_markdown_shows_files_counts_and_problem_rows() -> None:
    bad = csv_file(HEADER, "req-1,3,2026-12-05T10:00:00Z", "req|2,2,2026-12-05T10:00:00Z")
    _, report = read_outcomes([("outcomes/a_b.csv", bad), ("c.csv", b"\xfe\xff")], KNOWN)

    lines = outcomes_markdown(report).splitlines()

    assert lines[0] == "# Confirmed outcomes: 0 cases used"
    assert "- files: **2** (1 refused), rows read: **2**" in lines
    assert "| outcomes/a\\_b.csv | 2 | 0 | - |" in lines
    assert "| c.csv | 0 | 0 | not\\_utf8 |" in lines
    assert "| bad\\_diagnosis | diagnosis is not 2 (benign) or 4 (malignant) | 1 |" in lines
    file = "| outcomes/a\\_b.csv"
    assert f"{file} | 2 | bad\\_diagnosis | diagnosis must be 2 (benign) or 4 (malignant), got '3' |" in lines
    assert any(line.startswith(f"{file} | 3 | bad\\_case\\_id |") and "'req\\|2'" in line for line in lines)
