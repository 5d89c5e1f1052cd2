"""How many examples a property or fuzz test draws: what the test asks for under `make test`; a fifth (at least
10) under `make test-fast`, which sets ONCOLOGY_TEST_EXAMPLES=fast to give quick feedback while code changes."""

from __future__ import annotations

import os

FAST = os.environ.get("ONCOLOGY_TEST_EXAMPLES") == "fast"


def examples(wanted: int) -> int:
    """`wanted`, or a fifth of it (at least 10) in the fast suite."""
    return max(10, wanted // 5) if FAST else wanted
