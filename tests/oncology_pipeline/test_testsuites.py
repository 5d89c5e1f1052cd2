"""run_suite runs pytest for real, in a subprocess, on small suites written for the test."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from oncology_pipeline.reports import suites_markdown
from oncology_pipeline.testsuites import Suite, SuiteResult, run_suite, run_suites

PACKAGE = """
def double(x):
    return 2 * x


def unused(x):
    if x:
        return "never called"
    return "never called either"
"""

PASSING = """
import os

from tinypkg import double


def test_double():
    assert double(2) == 4


def test_the_environment_reaches_the_suite():
    assert os.environ["SUITE_FLAG"] == "on"
"""

MIXED = """
import pytest

from tinypkg import double


def test_double():
    assert double(3) == 6


def test_wrong():
    assert double(3) == 7


@pytest.fixture
def broken():
    raise RuntimeError("fixture failed")


def test_with_a_broken_fixture(broken):
    pass


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
"""


def _project(root: Path, tests: dict[str, str]) -> Path:
    """A tiny project: an importable package `tinypkg` and the given test files under tests/."""
    (root / "tinypkg").mkdir(parents=True)
    (root / "tinypkg" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (root / "tests").mkdir()
    for name, text in tests.items():
        (root / "tests" / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[SuiteResult, Path]:
    """One run of a suite with a pass per file, a failure, an error and a skip (a pytest subprocess is slow)."""
    root = _project(tmp_path_factory.mktemp("mixed"), {"test_passing.py": PASSING, "test_mixed.py": MIXED})
    out = root / "reports"
    result = run_suite("unit", ["tests"], out, cwd=root, env={"SUITE_FLAG": "on"}, cov_package="tinypkg")
    return result, out


def test_counts_of_a_failing_suite(mixed: tuple[SuiteResult, Path]) -> None:
    result, _ = mixed

    assert result.name == "unit"
    assert (result.tests, result.failures, result.errors, result.skipped) == (6, 1, 1, 1)
    assert result.returncode == 1
    assert result.passed is False
    assert result.seconds > 0


def test_a_failing_suite_says_what_failed_in_its_output_tail(mixed: tuple[SuiteResult, Path]) -> None:
    result, _ = mixed

    assert "FAILED tests/test_mixed.py::test_wrong" in result.output_tail
    assert "ERROR tests/test_mixed.py::test_with_a_broken_fixture" in result.output_tail
    assert "1 failed, 3 passed, 1 skipped, 1 error" in result.output_tail
    assert len(result.output_tail.splitlines()) <= 15


def test_coverage_and_junit_reports_are_written(mixed: tuple[SuiteResult, Path]) -> None:
    result, out = mixed

    assert (out / "unit.xml").exists()
    assert json.loads((out / "unit.json").read_text()) == result.coverage
    assert set(result.coverage["files"]) == {"tinypkg/__init__.py"}
    summary = result.coverage["files"]["tinypkg/__init__.py"]["summary"]
    assert summary["num_statements"] == 6
    assert summary["missing_lines"] == 3
    assert result.percent_covered == pytest.approx(50.0)
    assert result.percent_covered == result.coverage["totals"]["percent_covered"]


def test_a_suite_without_tests_does_not_pass_and_stale_reports_are_not_read(tmp_path: Path) -> None:
    root = _project(tmp_path, {})
    out = root / "reports"
    out.mkdir()
    (out / "empty.json").write_text(json.dumps({"totals": {"percent_covered": 99.0}}))
    (out / "empty.xml").write_text('<testsuite tests="7" failures="0" errors="0" skipped="0"/>')

    result = run_suite("empty", ["tests"], out, cwd=root, cov_package="tinypkg")

    assert result.tests == 0
    assert result.returncode == 5
    assert result.passed is False
    assert result.percent_covered != 99.0


MEETS = """
import os
import time
from pathlib import Path

import pytest


def test_meets_the_other_suite():
    here, there = Path(os.environ["MEETING"]) / os.environ["ME"], Path(os.environ["MEETING"]) / os.environ["OTHER"]
    here.touch()
    deadline = time.monotonic() + 60
    while not there.exists():
        assert time.monotonic() < deadline, "the other suite never started"
        time.sleep(0.05)


@pytest.mark.slow
def test_left_out_by_the_marker_expression():
    raise AssertionError("deselected by -m")
"""


def test_suites_run_side_by_side_with_their_own_arguments_and_coverage(tmp_path: Path) -> None:
    """Each suite waits until the other has started: they pass only when they run at the same time (and only
    when each got its own environment). Green suites, so this is also the passing case."""
    root = _project(tmp_path / "project", {"test_meets.py": MEETS})
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    suites = [
        Suite(name, "tests -m 'not slow'", f"why {name}", {"MEETING": str(meeting), "ME": me, "OTHER": you}, "tinypkg")
        for name, me, you in (("first", "a", "b"), ("second", "b", "a"))
    ]

    results = run_suites(suites, root / "reports", cwd=root, timeout=120)

    assert [r.name for r in results] == ["first", "second"]
    assert all(r.passed and (r.tests, r.skipped) == (1, 0) for r in results), [r.output_tail for r in results]
    assert all(r.returncode == 0 and "1 passed, 1 deselected" in r.output_tail for r in results)
    assert {p.name for p in (root / "reports").iterdir()} >= {"first.json", "second.json", "first.xml", "second.xml"}
    assert not (root / ".coverage").exists()  # each suite kept its coverage data apart
    report = suites_markdown(suites, results)
    assert "| first | tests -m 'not slow' | why first | 1 | 0 |" in report
    assert "Property, fuzz and file-determinism tests are not run here" in report
