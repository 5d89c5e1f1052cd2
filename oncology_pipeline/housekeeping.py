"""What housekeeping deletes: decisions over lists of versions, no I/O here.

Local images and run folders after each pipeline run, S3 model versions in the weekly cleanup: each keeps the
protected versions (production, this run, whatever a rollback needs) and the newest `keep` of the others.
Versions are `<UTC time>-<8 hex>` (oncology_model.versioning), so sorting by name sorts by time; a name that
is not a version is never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from oncology_model.versioning import VERSION_PATTERN


@dataclass(frozen=True)
class Decision:
    """What happens to one version, and why."""

    version: str
    delete: bool
    reason: str


@dataclass(frozen=True)
class Tidied:
    """What one run's local housekeeping removed."""

    images: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)


def decide(names: Iterable[str], keep: int, protected: Mapping[str, str]) -> list[Decision]:
    """One decision per distinct name, newest first: a protected name is kept for its reason, a name that is
    not a version is kept, the newest `keep` of the other versions are kept, older ones are deleted."""
    decisions = []
    kept = 0
    for name in sorted(set(names), reverse=True):
        if name in protected:
            decisions.append(Decision(name, False, protected[name]))
        elif not VERSION_PATTERN.fullmatch(name):
            decisions.append(Decision(name, False, "not a pipeline version"))
        elif kept < keep:
            kept += 1
            decisions.append(Decision(name, False, f"among the newest {keep}"))
        else:
            decisions.append(Decision(name, True, f"older than the newest {keep}"))
    return decisions


def stale(names: Iterable[str], keep: int, protected: Mapping[str, str]) -> list[str]:
    """The names `decide` deletes, newest first."""
    return [d.version for d in decide(names, keep, protected) if d.delete]


def rollback_protection(
    production: str | None, previous: str | None, promoted: Iterable[str], unreadable: Iterable[str]
) -> dict[str, str]:
    """The versions the S3 cleanup keeps whatever their age, with why: production, the version it replaced,
    every version ever promoted or being promoted (a rollback redeploys it and needs its bundle), and versions
    whose release record cannot be read (nothing proves they are not needed)."""
    protected = dict.fromkeys(unreadable, "release record unreadable: kept to be safe")
    protected |= dict.fromkeys(promoted, "was production: kept for rollback")
    if previous:
        protected[previous] = "production's previous version: kept for rollback"
    if production:
        protected[production] = "production"
    return protected
