"""One version string per pipeline run, stamped on every artifact and in the flow run name.

Scheme: `<UTC start time %Y%m%dT%H%M%SZ>-<first 8 hex digits of the flow run id>`, e.g.
`20261125T020000Z-3fa85f64`. It sorts by time, is unique per run, and leads back to the Prefect run.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

VERSION_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


def new_version(run_id: uuid.UUID | str | None = None, now: datetime | None = None) -> str:
    """A fresh pipeline version; without a run id, a random suffix."""
    suffix = (str(run_id) if run_id else uuid.uuid4().hex).replace("-", "")[:8]
    return f"{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%SZ}-{suffix}"


def check_version(version: str) -> str:
    """The version, if it follows the scheme (it becomes part of S3 keys and image tags)."""
    if not VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"version: {version!r} does not match <YYYYmmddTHHMMSSZ>-<8 hex digits>")
    return version
