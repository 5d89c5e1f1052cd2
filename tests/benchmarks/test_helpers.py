"""The benchmark's own helpers (no load is run here): summaries of runs and profiles, the wrk script, the seed path,
the unreachable S3 endpoint, the prediction log's counts, paired ratios and loads at once, a section run alone merged
into the page."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.load import Load, PairedRatio, Summary, Target, Wrk, _tree_cpu_seconds, at_once, unreachable_endpoint
from benchmarks.profiling import summarise
from benchmarks.run import Targets, log_counts, markers, merge
from benchmarks.seed_service import seed_predict
from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, Prediction, Tumor
from oncology_model.metrics import ServiceMetrics
from oncology_model.predictionlog import LogCounts


def _load(requests: int, p99_ms: float, non_2xx: int = 0) -> Load:
    return Load(requests, 10.0, 0.5, p99_ms, non_2xx, 0, cpu_us=30.0, others=0.1)


def test_a_summary_takes_medians_and_sums_the_errors() -> None:
    summary = Summary.of([_load(100_000, 9.0), _load(300_000, 1.0, non_2xx=2), _load(200_000, 2.0, non_2xx=1)])
    assert summary.rps == 20_000
    assert summary.rounds_rps == [10_000, 30_000, 20_000]
    assert summary.p99_ms == 2.0
    assert summary.non_2xx == 3


def test_a_paired_ratio_is_the_median_of_the_rounds_ratios_with_the_sign_tests_interval() -> None:
    baselines = [_load(100_000, 1.0) for _ in range(10)]
    loads = [_load(requests, 1.0) for requests in (70_000, 79_000, 88_000, 89_000, 92_000, 94_000, 97_000)]
    loads += [_load(requests, 1.0) for requests in (99_000, 100_000, 114_000)]
    ratio = PairedRatio.of(loads[::-1], baselines)
    assert ratio.median == pytest.approx(0.93)
    # 10 rounds: the 2nd smallest and 2nd largest cover the median with 1 - 2 (1 + 10) / 1024 = 97.9 %
    assert (ratio.low, ratio.high) == pytest.approx((0.79, 1.0))
    assert ratio.confidence == pytest.approx(1 - 22 / 1024)
    assert ratio.text() == "93% (97.9% interval: 79% to 100%)"
    few = PairedRatio.of(loads[:3], baselines[:3])  # too few rounds for 95 %: the extremes, at 75 %
    assert (few.low, few.high, few.confidence) == pytest.approx((0.7, 0.88, 0.75))


def test_at_once_loads_every_target_at_the_same_time_in_each_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("benchmarks.load.wait_for_quiet", lambda: None)
    spans: list[tuple[str, float, float]] = []

    class Timed(Wrk):
        def run(self, target: Target, path: str, body: bytes, connections: int, seconds: int) -> Load:
            start = time.monotonic()
            time.sleep(0.2)
            spans.append((target.name, start, time.monotonic()))
            return _load(1000 * len(target.name), 1.0)

    targets = [Target(name, "http://127.0.0.1:1", os.getpid()) for name in ("off", "on", "down")]
    results = at_once(Timed("wrk", tmp_path), targets, "/v1/predictions", b"{}", 16, rounds=2, seconds=1)
    assert {name: [load.requests for load in loads] for name, loads in results.items()} == {
        "off": [3000, 3000],
        "on": [2000, 2000],
        "down": [4000, 4000],
    }
    rounds = sorted(spans, key=lambda span: span[1])
    for round_ in (rounds[:3], rounds[3:]):  # within a round the three loads overlap
        assert max(start for _, start, _ in round_) < min(end for _, _, end in round_)
    assert max(span[2] for span in rounds[:3]) <= min(span[1] for span in rounds[3:])  # rounds follow each other


def test_the_wrk_script_posts_the_body_and_prints_its_summary(tmp_path: Path) -> None:
    wrk = Wrk("/usr/bin/wrk", tmp_path)
    body = b'{"tumors": [{"mitoses": 1}]}'
    command = wrk.command("http://127.0.0.1:1/v1/predictions", body, 16, 10)
    assert command[:6] == ["/usr/bin/wrk", "-t1", "-c16", "-d10s", "--timeout", "5s"]
    script = Path(command[7]).read_text()
    assert f"wrk.body = [==[{body.decode()}]==]" in script
    assert 'wrk.method = "POST"' in script
    assert "latency:percentile(99)" in script
    assert wrk.script(body) == Path(command[7]), "one script per body"


def test_cpu_time_of_a_process_tree_grows_with_work() -> None:
    before = _tree_cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert _tree_cpu_seconds(os.getpid()) > before


def test_a_profile_is_summarised_by_component_and_line(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "main (x.py:1);RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:524) 6\n"
        "main (x.py:1);Front._predict (oncology_model/fastpath.py:150) 3\n"
        " 1\n"
    )
    samples, components, leaves = summarise(raw)
    assert samples == 10
    assert components[0] == ("uvicorn: sending the response (two socket writes, keep-alive timer)", 0.6)
    assert ("fast path: body, decode + validate (msgspec), encode, answer", 0.3) in components
    assert ("event loop (uvloop, asyncio)", 0.1) in components
    assert leaves[0] == ("RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:524)", 0.6)


def test_the_seed_path_is_the_pipelines_predict(session_classifier: Classifier) -> None:
    for example, expected in ((EXAMPLE_BENIGN, Prediction.BENIGN), (EXAMPLE_MALIGNANT, Prediction.MALIGNANT)):
        row = np.array([Tumor(**example).as_row()], dtype=np.float64)
        assert seed_predict(session_classifier.pipeline, example) is expected
        assert int(session_classifier.pipeline.predict(row)[0]) == (expected is Prediction.MALIGNANT)


def test_the_unreachable_endpoint_lets_connections_time_out_and_refuses_none() -> None:
    with unreachable_endpoint() as url:
        host, port = url.removeprefix("http://").split(":")
        for _ in range(2):
            with pytest.raises(TimeoutError):
                socket.create_connection((host, int(port)), timeout=0.3)


def test_the_log_counts_are_read_from_the_service_metrics() -> None:
    metrics = ServiceMetrics()
    metrics.prediction_log(LogCounts(logged=130_000, written=0, dropped=30_000, failed_writes=4, buffered=100_000))
    counts = log_counts(metrics.exposition().decode())
    assert counts == {
        "logged": 130_000,
        "written": 0,
        "dropped": 30_000,
        "buffered": 100_000,
        "failed writes": 4,
    }
    with pytest.raises(SystemExit, match="missing or it logged nothing"):
        log_counts(ServiceMetrics().exposition().decode())


PAGE = "\n".join(
    [
        "# Benchmarks",
        "",
        "## Targets (issue 12)",
        "",
        "| target | measured in this run | |",
        "|---|---|---|",
        "| fast | 1 µs | **met** |",
        "| log on ≥ 90 % of off | 85% | **not met** |",
        "",
        markers("prediction")[0],
        "## One prediction",
        "old",
        markers("prediction")[1],
        "",
        markers("prediction_log")[0],
        "## The log",
        "old",
        markers("prediction_log")[1],
        "",
        "## Nights",
        "",
    ]
)


def test_a_section_run_alone_replaces_only_itself_and_its_targets_rows() -> None:
    targets = Targets()
    targets.add("log on ≥ 90 % of off", "93%", True)
    targets.add("S3 unreachable ≥ 90 % of reachable", "98%", True)
    merged = merge(PAGE, {"prediction_log": ["## The log", "new"]}, targets)
    assert merged == PAGE.replace("## The log\nold", "## The log\nnew").replace(
        "| log on ≥ 90 % of off | 85% | **not met** |",
        "| log on ≥ 90 % of off | 93% | **met** |\n| S3 unreachable ≥ 90 % of reachable | 98% | **met** |",
    )


def test_a_section_the_page_lacks_is_appended() -> None:
    merged = merge("# Benchmarks\n\ntext\n", {"prediction_log": ["## The log"]}, Targets())
    start, end = markers("prediction_log")
    assert merged == f"# Benchmarks\n\ntext\n\n{start}\n## The log\n{end}\n"
