"""Session fixtures made once per test run, also when pytest-xdist runs the tests in several worker processes.

The first process that asks makes the value under a file lock and writes it as JSON into the run's common temporary
folder; every other process reads it. Cleaning up is the business of the process that started the run (its
`pytest_sessionfinish`), after every worker is done: see `made_this_run`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

JSON = dict[str, Any]


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder every process of this run shares (an xdist worker's own one is inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], JSON]) -> JSON:
    """`make(folder)` in the first process that asks, with a folder of its own for files; the same JSON value in
    every process."""
    root = run_root(tmp_path_factory)
    record = root / f"shared-{name}.json"
    with FileLock(f"{record}.lock"):
        if (made := made_this_run(root, name)) is not None:
            return made
        folder = root / f"shared-{name}"
        folder.mkdir(exist_ok=True)
        value = make(folder)
        record.write_text(json.dumps(value))
        return value


def made_this_run(root: Path, name: str) -> JSON | None:
    """The value `once_per_run` made under `name` in this run, if any process made it."""
    record = root / f"shared-{name}.json"
    if not record.exists():
        return None
    value: JSON = json.loads(record.read_text())
    return value
