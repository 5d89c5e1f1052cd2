"""Run a pytest suite with coverage in a subprocess and read its results."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncology_pipeline.errors import SuiteFailed


@dataclass(frozen=True)
class Suite:
    """A suite to run: its name (the coverage report's), pytest arguments, why it runs, extra environment, the
    package it measures."""

    name: str
    arguments: str
    why: str
    env: dict[str, str] = field(default_factory=dict)
    cov_package: str = "oncology_model"

    @property
    def args(self) -> list[str]:
        """The pytest arguments, split as a shell would (`-m 'not slow'` stays one expression)."""
        return shlex.split(self.arguments)


@dataclass(frozen=True)
class SuiteResult:
    """What one suite run gave: counts, exit code, coverage report, and the tail of its output."""

    name: str
    tests: int
    failures: int
    errors: int
    skipped: int
    returncode: int
    seconds: float
    coverage: dict[str, Any]
    output_tail: str

    @property
    def passed(self) -> bool:
        """Green: exit code 0, at least one test, no failure or error."""
        return self.returncode == 0 and self.tests > 0 and not self.failures and not self.errors

    @property
    def percent_covered(self) -> float:
        """Total line coverage in percent."""
        return float(self.coverage.get("totals", {}).get("percent_covered", 0.0))


def run_suite(
    name: str,
    paths: list[str],
    out_dir: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    cov_package: str = "oncology_model",
    timeout: float | None = None,
) -> SuiteResult:
    """`pytest PATHS --cov` in a subprocess; writes `<out_dir>/<name>.json` (coverage) and `<name>.xml` (JUnit).
    A run longer than `timeout` seconds is killed: SuiteFailed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    coverage_path, junit_path = out_dir / f"{name}.json", out_dir / f"{name}.xml"
    for stale in (coverage_path, junit_path):
        stale.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        *paths,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--cov={cov_package}",
        f"--cov-report=json:{coverage_path}",
        f"--junitxml={junit_path}",
        "-o",
        "addopts=",
    ]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env={**os.environ, "COVERAGE_FILE": str(out_dir / f".{name}.coverage"), **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise SuiteFailed(
            f"{name}: pytest did not finish within {timeout:g} s (test_timeout_seconds); killed"
        ) from None
    seconds = time.perf_counter() - start
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if junit_path.exists():
        root = ET.parse(junit_path).getroot()
        for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
    coverage = json.loads(coverage_path.read_text()) if coverage_path.exists() else {}
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
    return SuiteResult(
        name=name, returncode=done.returncode, seconds=round(seconds, 2), coverage=coverage, output_tail=tail, **counts
    )


def run_suites(suites: Sequence[Suite], out_dir: Path, *, cwd: Path, timeout: float | None = None) -> list[SuiteResult]:
    """Every suite at the same time, each in its own pytest process (a core each); results in the suites' order."""

    def run(suite: Suite) -> SuiteResult:
        return run_suite(
            suite.name, suite.args, out_dir, cwd=cwd, env=suite.env, cov_package=suite.cov_package, timeout=timeout
        )

    with ThreadPoolExecutor(max(len(suites), 1)) as pool:
        return list(pool.map(run, suites))
