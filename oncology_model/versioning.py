"""The one version scheme: every model version, whether the pipeline or the CLI made it, is written this way.

Scheme: `<UTC time %Y%m%dT%H%M%SZ>-<8 hex digits>`, e.g. `20261125T020000Z-3fa85f64`. It sorts by time and
becomes part of S3 keys and image tags. A pipeline run takes its scheduled start and its flow run id (unique per
run, and it leads back to the Prefect run); the CLI takes the time of training and the data's sha256.

Standard library only (not in `bundle`): the flows' run names and the alerts command load it without scikit-learn.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

VERSION_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


def new_version(origin: uuid.UUID | str | None = None, now: datetime | None = None) -> str:
    """A fresh version: `now` (default: the current time) in UTC, then the first 8 hex digits of `origin` (a flow
    run id or a sha256); without an origin, a random suffix."""
    suffix = (str(origin) if origin else uuid.uuid4().hex).replace("-", "")[:8]
    return f"{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%SZ}-{suffix}"


def check_version(version: str) -> str:
    """The version, if it follows the scheme (it becomes part of S3 keys and image tags)."""
    if not VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"version: {version!r} does not match <YYYYmmddTHHMMSSZ>-<8 hex digits>")
    return version
