"""Flow tests: every one on the session's Prefect test server; a private package index for the image builds. Each
test's own buckets are the `stack` fixture (tests/conftest.py), shared with the fault tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.canaries import PrivateIndex, private_index_server


@pytest.fixture(autouse=True)
def _on_the_prefect_server(prefect_server: None) -> None:
    """Every flow test runs against the session's Prefect test server."""


@pytest.fixture
def private_index() -> Iterator[PrivateIndex]:
    """A private package index that records the credentials pip sends it (tests/support/canaries.py)."""
    with private_index_server() as index:
        yield index
