"""`python -m demo.traffic`: the rows it draws and shifts, its argument errors, and real traffic to the service on a
loopback port (uvicorn in a thread of this process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from demo import loop, traffic
from oncology_model.classifier import Classifier
from oncology_model.datamodel import FEATURES, Prediction, Tumor
from oncology_model.service import ServiceSettings, create_app

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service_url(model_bundle_dir: Path) -> Iterator[str]:
    """The service (the session bundle) served by uvicorn on a free loopback port, in a thread of this process."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(ServiceSettings(model_dir=model_bundle_dir)), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- the rows ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "shift", "expected"),
    [(5, 3, 8), (8, 3, 10), (10, 9, 10), (5, -3, 2), (2, -3, 1), (1, -9, 1), (7, 0, 7)],
)
def test_a_shift_adds_to_its_feature_and_clips_to_1_10(score: int, shift: int, expected: int) -> None:
    row = dict.fromkeys(FEATURES, 4) | {"bare_nuclei": score}
    assert traffic.shifted(row, {"bare_nuclei": shift}) == dict.fromkeys(FEATURES, 4) | {"bare_nuclei": expected}


def test_several_shifts_apply_each_to_its_own_feature() -> None:
    row = dict.fromkeys(FEATURES, 5)
    assert traffic.shifted(row, {"mitoses": 2, "clump_thickness": -7}) == row | {"mitoses": 7, "clump_thickness": 1}


def test_the_draw_is_seeded_with_replacement_from_the_complete_real_rows(real_csv: bytes) -> None:
    complete = [
        tuple(int(cell) for cell in line.split(",")[1:10]) for line in real_csv.decode().splitlines() if "?" not in line
    ]
    drawn = traffic.draw_rows(1000, {}, seed=7)
    assert drawn == traffic.draw_rows(1000, {}, seed=7)
    assert drawn != traffic.draw_rows(1000, {}, seed=8)
    assert all(list(row) == list(FEATURES) for row in drawn)
    assert {tuple(row.values()) for row in drawn} <= set(complete)
    assert len(complete) == 683 < len(drawn)  # more rows than there are: drawn with replacement


def test_the_shifted_draw_is_the_same_draw_shifted() -> None:
    shifts = {"bare_nuclei": 3, "mitoses": -1}
    plain = traffic.draw_rows(50, {}, seed=3)
    assert traffic.draw_rows(50, shifts, seed=3) == [traffic.shifted(row, shifts) for row in plain]


# --- argument errors: exit 2, one error line naming the argument and the rule ------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["localhost:8080"], "argument URL: must be http://HOST[:PORT]", id="url-scheme"),
        pytest.param(["http://h:99999"], "argument URL: must be http://HOST[:PORT]", id="url-port"),
        pytest.param(["http://h", "--count", "0"], "argument --count: must be an integer 1..1000000, got '0'", id="0"),
        pytest.param(["http://h", "--count", "x"], "argument --count: must be an integer", id="count-text"),
        pytest.param(["http://h", "--concurrency", "65"], "argument --concurrency: must be an integer 1..64", id="c"),
        pytest.param(["http://h", "--seed", "-1"], "argument --seed: must be an integer 0..", id="seed"),
        pytest.param(
            ["http://h", "--shift", "nuclei=+3"], "argument --shift: 'nuclei=+3' unknown feature 'nuclei'", id="name"
        ),
        pytest.param(["http://h", "--shift", "mitoses=3"], "argument --shift: 'mitoses=3' malformed", id="sign"),
        pytest.param(["http://h", "--shift", "mitoses=+10"], "argument --shift: 'mitoses=+10' malformed", id="big"),
        pytest.param(["http://h", "--shift", "mitoses"], "argument --shift: 'mitoses' malformed", id="no-value"),
        pytest.param(
            ["http://h", "--shift", "mitoses=+1", "--shift", "mitoses=+2"],
            "argument --shift: a feature is given twice",
            id="twice",
        ),
        pytest.param(["http://h", "--id-prefix", "a b"], "argument --id-prefix: 'a b' makes ids such as", id="prefix"),
        pytest.param(["http://h", "--id-prefix", ""], "argument --id-prefix: '' makes ids such as '-0599'", id="empty"),
    ],
)
def test_a_bad_argument_exits_2_with_one_line_naming_it(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        traffic.main(argv)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("usage: python -m demo.traffic")
    assert lines[-1].startswith(f"python -m demo.traffic: error: {expected}"), lines[-1]
    assert sum("error:" in line for line in lines) == 1


def test_a_bad_shift_lists_the_form_and_every_feature(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        traffic.main(["http://h", "--shift", "size=+2"])
    last = capsys.readouterr().err.splitlines()[-1]
    assert traffic.SHIFT_FORM in last
    assert all(name in last for name in FEATURES)


# --- real traffic ---------------------------------------------------------------------------------------------------


def test_every_request_is_answered_with_its_id_and_the_summary_counts_them(
    service_url: str, model_bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [service_url, "--count", "60", "--seed", "5", "--id-prefix", "t-run1", "--shift", "bare_nuclei=+3"]
    assert traffic.main(argv) == 0
    rows = traffic.draw_rows(60, {"bare_nuclei": 3}, seed=5)
    model = Classifier.from_bundle(model_bundle_dir)
    malignant = sum(model.predict(Tumor(**row))[0] is Prediction.MALIGNANT for row in rows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"sent      60 to {service_url} (seed 5) in ")
    assert lines[1:] == [
        f"answered  60 (2xx), malignant share {malignant / 60:.3f}",
        "failed    0",
        "ids       t-run1-0000 .. t-run1-0059 (request_id in the prediction log)",
        "shift     bare_nuclei +3 (clipped to 1..10)",
    ]


def test_send_keeps_each_answer_under_its_echoed_id(service_url: str) -> None:
    sent = traffic.send(service_url, traffic.draw_rows(20, {}, seed=1), "echo", concurrency=4)
    assert sent.ids == [f"echo-{n:04d}" for n in range(20)]
    assert sent.failures == {}
    assert set(sent.predictions) == set(sent.ids)
    assert set(sent.predictions.values()) <= {"benign", "malignant"}


def test_refused_requests_are_counted_by_status(service_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert traffic.main([f"{service_url}/nowhere", "--count", "5", "--id-prefix", "gone"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "answered  0 (2xx), malignant share n/a"
    assert out[2] == "failed    5: 5 x HTTP 404 Not Found"


def test_a_closed_port_exits_1_with_one_line_reason_and_no_traceback(closed_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo.traffic", closed_url, "--count", "3"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == ""
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed")]
    assert failed == ["failed    3: 3 x [Errno 111] Connection refused"]


def test_the_demo_sample_is_distinct_real_rows_with_their_classes_not_the_files_first(real_csv: bytes) -> None:
    complete = [line.split(",") for line in real_csv.decode().splitlines() if "?" not in line]
    pairs = [(tuple(int(v) for v in cells[1:10]), int(cells[10])) for cells in complete]
    sample = loop.demo_sample(300)
    drawn = [(tuple(row.values()), label) for row, label in sample]
    assert all(pair in pairs for pair in drawn)
    assert drawn != pairs[:300] and drawn == [(tuple(r.values()), c) for r, c in loop.demo_sample(300)]


def test_the_demo_loop_sends_its_sample_with_its_ids_and_returns_their_classes(service_url: str) -> None:
    sent = loop.send_traffic(service_url, "20261125T000000Z-abc", count=12)
    assert list(sent.diagnoses) == [f"demo-20261125T000000Z-abc-{n:04d}" for n in range(12)]
    assert list(sent.diagnoses.values()) == [label for _, label in loop.demo_sample(12)]


def test_the_demo_loop_raises_with_the_reasons_when_requests_fail(closed_url: str) -> None:
    with pytest.raises(RuntimeError, match=r"^2 of 2 requests failed: 2 x \[Errno 111\] Connection refused$"):
        loop.send_traffic(closed_url, "run", count=2)
