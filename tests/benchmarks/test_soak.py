"""The soak's pure parts (no container, no load): docker stats samples, memory spans, the verdicts, the docs section."""

from __future__ import annotations

import pytest

from benchmarks.load import Load
from benchmarks.soak import (
    END,
    MIB,
    START,
    Container,
    MemorySample,
    Window,
    failures,
    growth,
    last_before,
    median_between,
    memory_steady,
    p99_steady,
    rewrite_section,
    working_set,
)

RUNNING = Container(status="running", restarts=0, oom_killed=False)


def _load(p99_ms: float = 3.0, non_2xx: int = 0, socket_errors: int = 0, others: float = 0.3) -> Load:
    return Load(300_000, 10.0, 1.0, p99_ms, non_2xx, socket_errors, cpu_us=30.0, others=others)


def _windows(*p99s: float) -> list[Window]:
    return [Window(10.0 * index, _load(p99), proxy_cores=0.4) for index, p99 in enumerate(p99s)]


WARMUP = Window(-5.0, _load(), proxy_cores=0.4)


def test_working_set_is_usage_minus_inactive_file_cache_as_docker_stats_shows_it() -> None:
    v1 = {"memory_stats": {"usage": 90 * MIB, "stats": {"total_inactive_file": 30 * MIB, "inactive_file": 1}}}
    v2 = {"memory_stats": {"usage": 90 * MIB, "stats": {"inactive_file": 20 * MIB}}}
    assert working_set(v1) == 60 * MIB, "cgroup v1: total_inactive_file wins"
    assert working_set(v2) == 70 * MIB
    assert working_set({"memory_stats": {"usage": 5, "stats": {"inactive_file": 9}}}) == 5, "never negative"
    assert working_set({"memory_stats": {"usage": 7}}) == 7
    assert working_set({"memory_stats": {}}) is None, "a stopped container's sample has no usage"
    assert working_set({}) is None


def test_memory_spans_take_the_median_of_their_samples_only() -> None:
    samples = [MemorySample(at, value) for at, value in [(0.5, 999), (1, 10), (2, 400), (3, 12), (4, 11), (9, 50)]]
    assert median_between(samples, 1, 4) == 11.5, "the health-check spike (400) and the samples outside are ignored"
    assert median_between(samples, 5, 8) is None
    assert last_before(samples, 3.5) == 12
    assert last_before(samples, 0.1) is None


def test_growth_is_relative_to_the_start_and_at_most_ten_percent_is_steady() -> None:
    assert growth(100.0, 110.0) == pytest.approx(0.10)
    assert growth(100.0, 90.0) == pytest.approx(-0.10)
    assert memory_steady(100.0, 110.0), "exactly 10 % passes (110 / 100 - 1 is 0.10000000000000009 in floats)"
    assert not memory_steady(100.0, 110.001)
    assert memory_steady(100.0, 60.0), "shrinking is fine"


@pytest.mark.parametrize(
    ("first", "last", "steady"),
    [(3.0, 3.0, True), (3.0, 5.5, True), (3.0, 5.51, False), (0.5, 1.7, True), (10.0, 1.0, True), (2.0, 9.0, False)],
)
def test_p99_is_steady_within_one_and_a_half_times_the_first_window_plus_one_ms(
    first: float, last: float, steady: bool
) -> None:
    assert p99_steady(first, last) is steady


def test_a_clean_soak_has_no_failures() -> None:
    assert failures(WARMUP, _windows(3, 4, 3, 3, 4, 3.5), (50 * MIB, 54 * MIB), RUNNING) == []


def test_every_failed_criterion_is_named() -> None:
    reasons = failures(
        Window(-5, _load(non_2xx=2), None),
        [Window(0, _load(2.0, socket_errors=3, others=0.1), None), Window(10, _load(9.0, others=1.2), 0.4)],
        (50 * MIB, 60 * MIB),
        Container(status="exited", restarts=1, oom_killed=True),
    )
    assert reasons == [
        "5 errors (2 non-2xx, 3 socket errors)",
        "memory grew +20.0% (50.0 → 60.0 MiB), more than 10 %",
        "p99 not steady: 2.00 ms in the first window, 9.00 ms in the last (allowed 4.00 ms; other work on the "
        "machine 0.10 → 0.80 cores)",
        "the container is exited (1 restarts, OOM-killed: True)",
    ]


def test_memory_growth_of_exactly_ten_percent_passes_and_missing_samples_fail() -> None:
    assert failures(WARMUP, _windows(3, 3), (100.0, 110.0), RUNNING) == []
    assert failures(WARMUP, _windows(3, 3), None, RUNNING) == [
        "no memory samples from docker stats at the start or the end of the load"
    ]


def test_other_work_leaves_out_docker_proxy() -> None:
    assert Window(0, _load(others=0.5), proxy_cores=0.4).others == pytest.approx(0.1)
    assert Window(0, _load(others=0.5), proxy_cores=None).others == 0.5
    assert Window(0, _load(others=0.2), proxy_cores=0.4).others == 0.0


DOC = "# Reliability\n\nintro\n\n## Secrets\n\n| a |\n\n## Not yet tried\n\n- soak\n"


def test_the_section_goes_before_not_yet_tried_the_first_time() -> None:
    written = rewrite_section(DOC, ["## Soak", "", "first"])
    assert written == (
        "# Reliability\n\nintro\n\n## Secrets\n\n| a |\n\n"
        f"{START}\n## Soak\n\nfirst\n{END}\n\n## Not yet tried\n\n- soak\n"
    )


def test_a_second_run_replaces_only_what_lies_between_the_markers() -> None:
    once = rewrite_section(DOC, ["## Soak", "", "first"])
    twice = rewrite_section(once, ["## Soak", "", "second", "more"])
    assert twice == once.replace("first", "second\nmore")
    assert twice.count(START) == twice.count(END) == 1
    assert twice.replace(twice[twice.index(START) : twice.index(END) + len(END)], "") == once.replace(
        once[once.index(START) : once.index(END) + len(END)], ""
    ), "everything outside the markers is unchanged"


def test_without_the_heading_the_section_is_appended() -> None:
    assert rewrite_section("# R\n\ntext\n", ["x"]) == f"# R\n\ntext\n\n{START}\nx\n{END}\n"


def test_a_lone_or_reversed_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="not a pair"):
        rewrite_section(f"a\n{START}\nb\n", ["x"])
    with pytest.raises(ValueError, match="not a pair"):
        rewrite_section(f"{END}\n{START}\n", ["x"])
