"""The benchmark's own helpers (no load is run here): summaries of runs and profiles, the wrk script, the seed path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.load import Load, Summary, Wrk, _tree_cpu_seconds
from benchmarks.profiling import summarise
from benchmarks.seed_service import seed_predict
from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, Prediction, Tumor


def _load(requests: int, p99_ms: float, non_2xx: int = 0) -> Load:
    return Load(requests, 10.0, 0.5, p99_ms, non_2xx, 0, cpu_us=30.0, others=0.1)


def test_a_summary_takes_medians_and_sums_the_errors() -> None:
    summary = Summary.of([_load(100_000, 9.0), _load(300_000, 1.0, non_2xx=2), _load(200_000, 2.0, non_2xx=1)])
    assert summary.rps == 20_000
    assert summary.rounds_rps == [10_000, 30_000, 20_000]
    assert summary.p99_ms == 2.0
    assert summary.non_2xx == 3


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
