"""The alert tests' own Prefect server with the alerts applied (tests/support/alert_server.py): one per package;
each test tells its messages apart by run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.alert_server import AlertServer, prefect_alert_server


@pytest.fixture(scope="package")
def alert_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertServer]:
    """The package's alert server; fails in a process that already runs the session's Prefect test server."""
    if os.environ.get("TESTS_PREFECT_HARNESS"):
        pytest.fail(
            "the alert tests need a process without the session's Prefect test server (Prefect's event and log "
            "workers are bound to one server per process): run them first, or as the xdist group `alerts`"
        )
    with prefect_alert_server(tmp_path_factory.mktemp("alerts")) as running:
        yield running
