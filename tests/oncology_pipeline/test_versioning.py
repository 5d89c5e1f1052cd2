"""The pipeline version: `<UTC start %Y%m%dT%H%M%SZ>-<8 hex digits of the run id>`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from oncology_model.versioning import check_version, new_version

RUN_ID = uuid.UUID("3fa85f64-5717-4562-b3fc-2c963f66afa6")
START = datetime(2026, 11, 25, 2, 0, 0, tzinfo=UTC)


def test_a_version_from_a_run_id_and_a_start_time() -> None:
    assert new_version(RUN_ID, START) == "20261125T020000Z-3fa85f64"


def test_a_run_id_given_as_a_string_gives_the_same_version() -> None:
    assert new_version(str(RUN_ID), START) == new_version(RUN_ID, START)


def test_a_run_id_whose_first_group_is_short_still_gives_eight_hex_digits() -> None:
    run_id = uuid.UUID("00000001-0002-4003-8004-000000000005")
    assert new_version(run_id, START) == "20261125T020000Z-00000001"


def test_the_start_time_is_written_in_utc() -> None:
    berlin_winter = timezone(timedelta(hours=1))
    assert new_version(RUN_ID, datetime(2026, 11, 25, 3, 0, 0, tzinfo=berlin_winter)) == "20261125T020000Z-3fa85f64"
    assert new_version(RUN_ID, datetime(2026, 11, 24, 21, 30, 5, tzinfo=timezone(timedelta(hours=-5)))) == (
        "20261125T023005Z-3fa85f64"
    )


def test_without_a_run_id_the_suffix_is_random() -> None:
    versions = {new_version(now=START) for _ in range(20)}

    assert len(versions) == 20
    for version in versions:
        assert version.startswith("20261125T020000Z-")
        assert check_version(version) == version


def test_without_a_time_the_version_is_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    version = new_version(RUN_ID)
    after = datetime.now(UTC)

    stamp = datetime.strptime(version.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= after
    assert version.endswith("-3fa85f64")


def test_versions_sort_by_start_time() -> None:
    times = [START + timedelta(seconds=s) for s in (0, 1, 59, 3600, 86400 * 40, 86400 * 400)]
    versions = [new_version(uuid.uuid4(), t) for t in times]
    assert sorted(versions) == versions


@pytest.mark.parametrize(
    "version", ["20261125T020000Z-3fa85f64", "19991231T235959Z-00000000", "20261125T020000Z-abcdef01"]
)
def test_check_version_accepts_the_scheme(version: str) -> None:
    assert check_version(version) == version


@pytest.mark.parametrize(
    "version",
    [
        "",
        "latest",
        "20261125T020000Z",
        "20261125T020000Z-3fa85f6",
        "20261125T020000Z-3fa85f645",
        "20261125T020000Z-3FA85F64",
        "20261125T020000-3fa85f64",
        "2026-11-25T02:00:00Z-3fa85f64",
        "20261125T020000Z_3fa85f64",
        "20261125T020000Z-3fa85g64",
        " 20261125T020000Z-3fa85f64",
        "20261125T020000Z-3fa85f64 ",
        "../20261125T020000Z-3fa85f64",
        "20261125T020000Z-3fa85f64/x",
    ],
)
def test_check_version_refuses_anything_else(version: str) -> None:
    with pytest.raises(ValueError, match=r"^version: .* does not match <YYYYmmddTHHMMSSZ>-<8 hex digits>$"):
        check_version(version)


@pytest.mark.parametrize(
    "version",
    ["20261125T020000Z-3fa85f64\n", "\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0665T020000Z-3fa85f64"],
    ids=["trailing-newline", "arabic-indic-digits"],
)
def test_check_version_refuses_what_cannot_be_an_image_tag(version: str) -> None:
    """BUG: VERSION_PATTERN is matched with `re.match` and ends in `$`, which also matches before a final
    newline, and its `\\d` matches any Unicode digit; both versions pass although neither can be an image
    tag and both change the S3 keys. (`re.fullmatch` with `[0-9]`, or re.ASCII and `\\Z`, would refuse them.)"""
    with pytest.raises(ValueError, match="does not match"):
        check_version(version)


def test_the_error_message_quotes_the_version() -> None:
    with pytest.raises(ValueError) as raised:
        check_version("v1.2")
    assert str(raised.value) == "version: 'v1.2' does not match <YYYYmmddTHHMMSSZ>-<8 hex digits>"
