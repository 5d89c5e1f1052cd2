"""What housekeeping deletes: the newest `keep` besides the protected versions stay, names that are not versions
are never touched, and the S3 cleanup protects everything a rollback needs."""

from __future__ import annotations

import pytest

from oncology_pipeline.housekeeping import Decision, decide, rollback_protection, stale
from oncology_pipeline.reports import cleanup_rows

V1, V2, V3, V4, V5, V6 = (f"2026110{day}T020000Z-0000000{day}" for day in range(1, 7))


@pytest.mark.parametrize(
    ("names", "keep", "protected", "deleted"),
    [
        pytest.param([], 3, {}, [], id="nothing-stored"),
        pytest.param([V1, V2], 3, {}, [], id="fewer-than-keep"),
        pytest.param([V1, V2, V3], 3, {}, [], id="exactly-keep"),
        pytest.param([V3, V1, V5, V2, V4], 2, {}, [V3, V2, V1], id="unsorted-input-newest-kept"),
        pytest.param([V1, V2, V3, V4], 2, {V1: "production"}, [V2], id="old-production-kept-besides-newest"),
        pytest.param([V1, V2, V3, V4], 2, {V4: "this run"}, [V1], id="protected-newest-not-counted"),
        pytest.param([V1, V2, V3, V4, V5], 1, {V2: "production", V5: "this run"}, [V3, V1], id="production-and-run"),
        pytest.param([V1, V2, V3], 1, {V6: "production"}, [V2, V1], id="protected-absent-is-harmless"),
        pytest.param([V1, V1, V2, V2, V3], 1, {}, [V2, V1], id="duplicates-once"),
        pytest.param([V1, "image-context", "latest", V2], 1, {}, [V1], id="non-versions-never-deleted"),
        pytest.param([V1, "20261101T020000Z-0000000", V2], 1, {}, [V1], id="almost-a-version-kept"),
    ],
)
def test_stale_keeps_protected_versions_and_the_newest_others(
    names: list[str], keep: int, protected: dict[str, str], deleted: list[str]
) -> None:
    assert stale(names, keep, protected) == deleted


def test_every_name_gets_a_decision_newest_first_with_its_reason() -> None:
    decisions = decide([V1, V2, V3, V4, "tmp", V3], 1, {V1: "production", V4: "this run"})
    assert decisions == [
        Decision("tmp", False, "not a pipeline version"),
        Decision(V4, False, "this run"),
        Decision(V3, False, "among the newest 1"),
        Decision(V2, True, "older than the newest 1"),
        Decision(V1, False, "production"),
    ]


@pytest.mark.parametrize(
    ("production", "previous", "promoted", "unreadable", "expected"),
    [
        pytest.param(None, None, [], [], {}, id="nothing-released-yet"),
        pytest.param(V3, None, [V3], [], {V3: "production"}, id="first-production"),
        pytest.param(
            V4,
            V2,
            [V1, V2, V4],
            [],
            {
                V1: "was production: kept for rollback",
                V2: "production's previous version: kept for rollback",
                V4: "production",
            },
            id="rollback-targets",
        ),
        pytest.param(
            V2,
            V1,
            [],
            [V5],
            {
                V5: "release record unreadable: kept to be safe",
                V1: "production's previous version: kept for rollback",
                V2: "production",
            },
            id="records-missing-pointer-still-counts",
        ),
        pytest.param(V2, None, [V2], [V2], {V2: "production"}, id="production-reason-wins"),
    ],
)
def test_rollback_protection_names_every_version_a_rollback_may_need(
    production: str | None, previous: str | None, promoted: list[str], unreadable: list[str], expected: dict[str, str]
) -> None:
    assert rollback_protection(production, previous, promoted, unreadable) == expected


def test_the_cleanup_never_selects_what_a_rollback_needs_however_old() -> None:
    protected = rollback_protection(V1, V2, [V1, V2, V3], [])
    assert stale([V1, V2, V3, V4, V5, V6], 1, protected) == [V5, V4]


@pytest.mark.parametrize(
    ("dry_run", "deleted", "actions"),
    [
        pytest.param(True, [], ["keep", "would delete", "would delete"], id="dry-run"),
        pytest.param(False, [V2, V1], ["keep", "deleted", "deleted"], id="deleted"),
        pytest.param(False, [V1], ["keep", "kept: production changed meanwhile", "deleted"], id="skipped-at-delete"),
    ],
)
def test_cleanup_rows_say_what_happened_to_each_version(dry_run: bool, deleted: list[str], actions: list[str]) -> None:
    rows = cleanup_rows(decide([V1, V2, V3], 1, {}), deleted, dry_run)
    assert [row["version"] for row in rows] == [V3, V2, V1]
    assert [row["model files"] for row in rows] == actions
    assert rows[1]["reason"] == "older than the newest 1"
