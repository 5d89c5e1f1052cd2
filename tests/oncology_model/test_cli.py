"""The command line, in-process: sample-data, train, serve; plus the `python -m oncology_model` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import oncology_model
from oncology_model.bundle import read_metadata
from oncology_model.classifier import Classifier
from oncology_model.cli import main
from oncology_model.data import parse_csv
from oncology_model.datamodel import EXAMPLE_MALIGNANT, Prediction, Tumor

REPO_ROOT = Path(oncology_model.__file__).resolve().parents[1]


@pytest.fixture
def real_csv_file(tmp_path: Path, real_csv: bytes) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(real_csv)
    return path


@pytest.fixture
def noisy_csv_file(tmp_path: Path, real_csv: bytes) -> Path:
    """The real data with every fifth label flipped: a model trained on it cannot pass the quality gate."""
    lines = real_csv.decode().splitlines()
    flipped = []
    for n, line in enumerate(lines):
        cells = line.split(",")
        if n % 5 == 0:
            cells[-1] = {"2": "4", "4": "2"}[cells[-1]]
        flipped.append(",".join(cells))
    path = tmp_path / "noisy.csv"
    path.write_text("\n".join(flipped) + "\n")
    return path


def _error_line(stderr: str) -> str:
    """The last line of stderr, which must be the error, alone on its line."""
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    assert sum("error: " in line for line in lines) == 1, stderr
    return lines[-1]


def test_sample_data_writes_the_real_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nested" / "data.csv"
    assert main(["sample-data", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote 699 rows to {out}\n"
    raw = out.read_bytes()
    assert raw.count(b"\n") == 699
    report = parse_csv(raw).report
    assert (report.rows_read, report.rows_kept) == (699, 699)
    assert report.class_balance == {"benign": 458, "malignant": 241}


def test_train_prints_the_metrics_and_writes_a_bundle(
    tmp_path: Path, real_csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundles" / "model"
    code = main(["train", "--data", str(real_csv_file), "--out", str(out), "--version", "v-cli", "--seed", "42"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "model version  v-cli" in captured.out
    assert (
        "estimator      logistic_regression (threshold 0.2017, chosen for cross-validated recall 0.98" in captured.out
    )
    assert "data           699 of 699 rows kept" in captured.out
    assert "hold-out       140 rows (559 for training)" in captured.out
    for metric in ("accuracy", "precision", "recall", "f1", "specificity", "roc_auc", "tn", "fp", "fn", "tp"):
        assert any(line.startswith(f"{metric} ") for line in captured.out.splitlines()), metric
    assert "cv roc_auc" in captured.out
    assert "quality gate   PASSED" in captured.out
    assert "reading" in captured.err
    assert "699/699 rows kept" in captured.err
    assert "saving the bundle" in captured.err
    classifier = Classifier.from_bundle(out)
    assert classifier.version == "v-cli"
    assert classifier.metadata.gate is not None
    assert classifier.metadata.gate.passed
    assert classifier.predict(Tumor(**EXAMPLE_MALIGNANT))[0] is Prediction.MALIGNANT
    assert [p.name for p in out.parent.iterdir()] == ["model"]


def test_train_options_set_the_hold_out_the_folds_and_the_threshold_of_the_bundle(
    tmp_path: Path, real_csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    argv = ["train", "--data", str(real_csv_file), "--out", str(out), "--test-size", "0.3", "--cv-folds", "3"]
    code = main([*argv, "--decision-threshold", "0.35"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "estimator      logistic_regression (threshold 0.3500)" in captured.out
    assert "hold-out       210 rows (489 for training)" in captured.out
    assert "with 3-fold cross-validation, evaluating on the 30% hold-out" in captured.err
    classifier = Classifier.from_bundle(out)
    config = classifier.metadata.config
    assert (config.test_size, config.cv_folds, config.decision_threshold, classifier.threshold) == (0.3, 3, 0.35, 0.35)
    assert all(len(scores) == 3 for scores in classifier.metadata.evaluation.cv_scores.values())
    assert classifier.metadata.evaluation.n_test == 210


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--test-size", "0.5", "error: test_size: Input should be less than 0.5 (got 0.5)"),
        ("--test-size", "0", "error: test_size: Input should be greater than 0 (got 0.0)"),
        ("--cv-folds", "1", "error: cv_folds: Input should be greater than or equal to 2 (got 1)"),
        ("--decision-threshold", "1", "error: decision_threshold: Input should be less than 1 (got 1.0)"),
        ("--target-recall", "1.5", "error: target_recall: Input should be less than or equal to 1 (got 1.5)"),
    ],
)
def test_train_with_a_bad_training_option_exits_1_with_one_line_naming_the_rule(
    tmp_path: Path, real_csv_file: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, error: str
) -> None:
    code = main(["train", "--data", str(real_csv_file), "--out", str(tmp_path / "model"), option, value])
    captured = capsys.readouterr()
    assert code == 1
    assert _error_line(captured.err) == error
    assert captured.out == ""
    assert not (tmp_path / "model").exists()


def test_train_on_a_missing_file_exits_1_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.csv"
    code = main(["train", "--data", str(missing), "--out", str(tmp_path / "model")])
    captured = capsys.readouterr()
    assert code == 1
    assert _error_line(captured.err) == f"error: cannot read {missing}: No such file or directory"
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"1,2,3\n", "error: 1 rows have the wrong number of columns", id="wrong-columns"),
        pytest.param(b"", "error: the file holds no data rows", id="empty"),
        pytest.param(b"1000025,5,1,1,1,2,1,3,1,1,2\n", "error: all 1 valid rows are benign", id="one-class"),
        pytest.param(b"\xff\xfe1,2\n", "error: the file is not UTF-8 text", id="not-utf8"),
    ],
)
def test_train_on_an_invalid_csv_exits_1_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    data = tmp_path / "bad.csv"
    data.write_bytes(content)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "model")])
    captured = capsys.readouterr()
    assert code == 1
    assert _error_line(captured.err).startswith(reason)
    assert captured.out == ""
    assert not (tmp_path / "model").exists()


def test_train_strict_with_a_failing_gate_exits_1_and_writes_nothing(
    tmp_path: Path, noisy_csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = tmp_path / "bundles"
    code = main(["train", "--data", str(noisy_csv_file), "--out", str(parent / "model"), "--strict"])
    captured = capsys.readouterr()
    assert code == 1
    error = _error_line(captured.err)
    assert error.startswith("error: quality gate failed (--strict): ")
    assert "< minimum" in error
    assert error.endswith("; nothing saved")
    assert "quality gate   FAILED" in captured.out
    assert not parent.exists() or list(parent.iterdir()) == []


def test_train_without_strict_saves_a_model_that_failed_the_gate(
    tmp_path: Path, noisy_csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    assert main(["train", "--data", str(noisy_csv_file), "--out", str(out)]) == 0
    assert "quality gate   FAILED" in capsys.readouterr().out
    gate = read_metadata(out).gate
    assert gate is not None
    assert gate.passed is False
    assert any("< minimum" in reason for reason in gate.reasons)


def test_train_tolerates_a_few_bad_rows_up_to_max_invalid_share(
    tmp_path: Path, real_csv: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = real_csv.decode().splitlines()
    for n in range(0, 70, 2):  # 35 of 699 rows (5.0 %) get an out-of-range score
        cells = lines[n].split(",")
        cells[1] = "11"
        lines[n] = ",".join(cells)
    data = tmp_path / "data.csv"
    data.write_text("\n".join(lines) + "\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "a"), "--max-invalid-share", "0.01"]) == 1
    assert "35 of 699 rows are invalid" in _error_line(capsys.readouterr().err)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "b"), "--max-invalid-share", "0.06"]) == 0
    assert read_metadata(tmp_path / "b").rows == {"read": 699, "kept": 664, "train": 531, "test": 133}


def test_serve_with_a_missing_bundle_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server must not start")

    monkeypatch.setattr(uvicorn, "run", no_server)
    missing = tmp_path / "absent"
    code = main(["serve", "--model", str(missing)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == f"error: no model bundle at {missing}: metadata.json is missing\n"
    assert captured.out == ""


def test_serve_with_a_good_bundle_starts_uvicorn_with_the_service_factory(
    model_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.delenv("ONCOLOGY_MODEL_DIR", raising=False)
    code = main(["serve", "--model", str(model_bundle_dir), "--port", "8123"])
    assert code == 0
    assert calls == [
        (
            ("oncology_model.service:create_app",),
            {"factory": True, "host": "127.0.0.1", "port": 8123, "workers": 1},
        )
    ]
    assert os.environ["ONCOLOGY_MODEL_DIR"] == str(model_bundle_dir)


@pytest.mark.parametrize("command", [[], ["sample-data"], ["train"], ["serve"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m oncology_model")
    if command:
        assert command[0] in out.splitlines()[0]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["fly"], id="unknown-command"),
        pytest.param(["train", "--data", "x.csv"], id="missing-out"),
        pytest.param(["train", "--data", "x", "--out", "y", "--estimator", "svm"], id="bad-estimator"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oncology_model", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m oncology_model")
    for command in ("sample-data", "train", "serve"):
        assert command in result.stdout


# --- bad training data: one line, no traceback -------------------------------------


def _rows(real: bytes) -> list[list[str]]:
    return [line.split(",") for line in real.decode().splitlines()]


def _csv(rows: list[list[str]]) -> bytes:
    return ("\n".join(",".join(row) for row in rows) + "\n").encode()


def _with_cell(real: bytes, column: int, value: str, rows: slice = slice(None)) -> bytes:
    """The real data with one column set to `value` in the chosen rows."""
    changed = _rows(real)
    for row in changed[rows]:
        row[column] = value
    return _csv(changed)


def _latin1(real: bytes) -> bytes:
    return real[:5000] + "é".encode("latin-1") + real[5000:]


def _unclosed_quote(real: bytes) -> bytes:
    rows = _rows(real)
    rows[2][4] = '"' + rows[2][4]
    return _csv(rows)


def _few_rows(real: bytes) -> bytes:
    rows = _rows(real)
    return _csv([r for r in rows if r[-1] == "2"][:5] + [r for r in rows if r[-1] == "4"][:5])


BARE_NUCLEI_COLUMN = 6


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            lambda real: _with_cell(real, 3, "1" * 1_000_000, slice(5, 6)),
            "error: the file is not valid CSV (an overlong field or an unclosed quote?); "
            "first: row 6: field larger than field limit (131072)",
            id="megabyte-field",
        ),
        pytest.param(
            lambda real: _with_cell(real, 2, "1" * 100_000, slice(5, 6)),
            "error: 1 of 699 rows are invalid, more than the allowed share of 0% (max_invalid_share); "
            "most often uniformity_of_cell_size: must be between 1 and 10 (1 rows); first: row 6: "
            "uniformity_of_cell_size: must be between 1 and 10, got '111111111111111111111111'... (100000 characters)",
            id="100-kB-number",
        ),
        pytest.param(
            lambda real: _with_cell(real, 9, "1\x00", slice(0, 40)),
            "error: 40 of 699 rows are invalid, more than the allowed share of 0% (max_invalid_share); most often "
            "mitoses: must be an integer (40 rows); first: row 1: mitoses: must be an integer, got '1\\x00'",
            id="nul-bytes",
        ),
        pytest.param(
            lambda real: _with_cell(real, 10, "\x1b[2J", slice(0, 10)),
            "error: 10 of 699 rows are invalid, more than the allowed share of 0% (max_invalid_share); most often "
            "class: class must be 2 (benign) or 4 (malignant) (10 rows); first: row 1: class: class must be 2 "
            "(benign) or 4 (malignant), got '\\x1b[2J'",
            id="terminal-escape",
        ),
        pytest.param(
            lambda real: real.decode().encode("utf-16"),
            "error: the file is not UTF-8 text: it starts with a UTF-16 byte-order mark; save it as UTF-8",
            id="utf-16",
        ),
        pytest.param(
            _latin1,
            "error: the file is not UTF-8 text (byte 5000): save it as UTF-8; first: row 175: invalid continuation "
            "byte",
            id="latin-1",
        ),
        pytest.param(
            _unclosed_quote,
            "error: 1 rows have the wrong number of columns (expected 11: sample_id, clump_thickness, "
            "uniformity_of_cell_size, uniformity_of_cell_shape, marginal_adhesion, single_epithelial_cell_size, "
            "bare_nuclei, bland_chromatin, normal_nucleoli, mitoses, class); first: row 3: 5 columns, expected 11",
            id="unclosed-quote",
        ),
        pytest.param(
            lambda real: _with_cell(real, 0, "9" * 30),
            "error: 699 of 699 rows are invalid, more than the allowed share of 0% (max_invalid_share); most often "
            "sample_id: must have at most 18 digits (699 rows); first: row 1: sample_id: must have at most 18 "
            "digits, got '999999999999999999999999'... (30 characters)",
            id="sample-id-too-long",
        ),
        pytest.param(
            lambda real: _with_cell(real, BARE_NUCLEI_COLUMN, "?"),
            "error: bare_nuclei is missing in 699 of 699 valid rows, more than the allowed share of 5% "
            "(max_missing_share): a model would learn little from imputed values; first: row 1: bare_nuclei: "
            "missing value",
            id="bare-nuclei-missing-everywhere",
        ),
        pytest.param(
            _few_rows,
            "error: too few rows to train: benign 5, malignant 5; a 20% hold-out and 5-fold cross-validation need "
            "at least 8 valid rows of each class",
            id="too-few-rows",
        ),
    ],
)
def test_bad_training_data_exits_1_with_one_printable_line_and_no_traceback(
    tmp_path: Path,
    real_csv: bytes,
    make: Callable[[bytes], bytes],
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, out = tmp_path / "data.csv", tmp_path / "model"
    data.write_bytes(make(real_csv))
    code = main(["train", "--data", str(data), "--out", str(out), "--max-invalid-share", "0"])
    captured = capsys.readouterr()
    assert code == 1, captured.err[-2000:]
    assert captured.out == ""
    assert _error_line(captured.err) == expected
    assert captured.err.endswith(expected + "\n")
    assert not out.exists()


def test_bad_training_data_through_the_module_entry_point_prints_no_traceback(tmp_path: Path, real_csv: bytes) -> None:
    """The cases above in-process; one through `python -m oncology_model`, as a user runs it."""
    data, out = tmp_path / "data.csv", tmp_path / "model"
    data.write_bytes(real_csv.decode().encode("utf-16"))
    result = subprocess.run(
        [sys.executable, "-m", "oncology_model", "train", "--data", str(data), "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    expected = "error: the file is not UTF-8 text: it starts with a UTF-16 byte-order mark; save it as UTF-8"
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (result.stdout, _error_line(result.stderr)) == ("", expected)
    assert not out.exists()


def test_sample_data_onto_a_directory_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sample-data", str(tmp_path)])
    assert code == 1
    assert capsys.readouterr().err == f"error: cannot write {tmp_path}: Is a directory\n"
