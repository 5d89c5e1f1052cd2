"""Data validation: schema, ranges, labels, duplicates, missing values, hard failures, the real data set."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from oncology_model.data import COLUMNS, Dataset, combine, load_csv, parse_csv
from oncology_model.datamodel import FEATURES
from oncology_model.errors import DataValidationError
from tests.support.data import BENIGN_ROW, MALIGNANT_ROW, csv_bytes, synthetic_rows

BARE_NUCLEI = 1 + FEATURES.index("bare_nuclei")  # column index in a CSV row (sample id first)


def _rows(n: int = 200) -> list[list[object]]:
    return synthetic_rows(n)


def _with(rows: list[list[object]], index: int, column: int, value: object) -> list[list[object]]:
    """A copy of `rows` with one cell replaced."""
    changed = [list(r) for r in rows]
    changed[index][column] = value
    return changed


# --- valid files -------------------------------------------------------------------------------------------------


def test_valid_file_without_header() -> None:
    rows = _rows(200)
    dataset = parse_csv(csv_bytes(rows))
    assert dataset.X.shape == (200, len(FEATURES))
    assert dataset.X.dtype == np.float64
    assert dataset.y.tolist() == [1 if r[-1] == 4 else 0 for r in rows]
    assert dataset.sample_ids.tolist() == [r[0] for r in rows]
    assert dataset.X[0].tolist() == [float(str(v)) for v in rows[0][1:-1]]
    report = dataset.report
    assert (report.rows_read, report.rows_kept, report.header) == (200, 200, False)
    assert report.dropped == []
    assert report.dropped_by_reason == {}
    assert report.duplicate_sample_ids == {}
    assert report.duplicate_rows == 0
    assert report.class_balance == {"benign": 100, "malignant": 100}
    assert report.missing == dict.fromkeys(FEATURES, 0)


@pytest.mark.parametrize("id_name", ["sample_id", "sample_code_number", "id", "Sample_ID"])
def test_valid_file_with_header(id_name: str) -> None:
    rows = _rows(50)
    dataset = parse_csv(csv_bytes(rows, header=[id_name, *COLUMNS[1:]]))
    assert dataset.report.header is True
    assert dataset.report.rows_read == 50
    assert dataset.report.rows_kept == 50
    assert dataset.sample_ids.tolist() == [r[0] for r in rows]


def test_header_rows_shift_the_reported_row_numbers() -> None:
    rows = _with(_rows(50), 3, 1, 11)
    dataset = parse_csv(csv_bytes(rows, header=list(COLUMNS)))
    assert [(d.row, d.field) for d in dataset.report.dropped] == [(5, "clump_thickness")]


def test_header_with_wrong_columns_is_a_hard_failure() -> None:
    header = ["sample_id", *reversed(COLUMNS[1:-1]), "class"]
    with pytest.raises(DataValidationError, match="header row does not match") as caught:
        parse_csv(csv_bytes(_rows(20), header=header))
    assert caught.value.problems[0].startswith("row 1: expected sample_id, clump_thickness")


def test_utf8_byte_order_mark_is_accepted() -> None:
    raw = b"\xef\xbb\xbf" + csv_bytes(_rows(20), header=list(COLUMNS))
    dataset = parse_csv(raw)
    assert dataset.report.header is True
    assert dataset.report.rows_kept == 20


def test_blank_lines_are_skipped_and_row_numbers_stay_file_lines() -> None:
    rows = _with(_rows(20), 2, 1, 0)
    lines = csv_bytes(rows).decode().splitlines()
    raw = ("\n".join([*lines[:2], "", *lines[2:]]) + "\n").encode()  # blank line 3; the bad row moves to line 4
    dataset = parse_csv(raw)
    assert dataset.report.rows_read == 20
    assert [d.row for d in dataset.report.dropped] == [4]


def test_sha256_is_of_the_raw_bytes() -> None:
    raw = csv_bytes(_rows(20))
    assert parse_csv(raw).report.sha256 == hashlib.sha256(raw).hexdigest()
    assert parse_csv(raw + b"\n").report.sha256 == hashlib.sha256(raw + b"\n").hexdigest()
    assert parse_csv(raw + b"\n").report.sha256 != parse_csv(raw).report.sha256


@pytest.mark.parametrize(("n_benign", "n_malignant"), [(30, 10), (10, 30), (1, 1)])
def test_class_balance(n_benign: int, n_malignant: int) -> None:
    rows = [[i + 1, *BENIGN_ROW, 2] for i in range(n_benign)]
    rows += [[1000 + i, *MALIGNANT_ROW, 4] for i in range(n_malignant)]
    dataset = parse_csv(csv_bytes(rows))
    assert dataset.report.class_balance == {"benign": n_benign, "malignant": n_malignant}
    assert int(dataset.y.sum()) == n_malignant


def test_load_csv_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    raw = csv_bytes(_rows(30))
    path.write_bytes(raw)
    dataset = load_csv(path)
    assert dataset.report.rows_kept == 30
    assert dataset.report.sha256 == hashlib.sha256(raw).hexdigest()


def test_load_csv_on_a_missing_file_is_a_data_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataValidationError, match=re.escape(f"cannot read {path}: No such file")):
        load_csv(path)


# --- hard failures -----------------------------------------------------------------------------------------------


def test_wrong_column_count_is_a_hard_failure_listing_rows() -> None:
    rows = _rows(200)
    rows[4] = rows[4][:-1]  # 10 columns
    rows[8] = [*rows[8], 7]  # 12 columns
    with pytest.raises(DataValidationError, match="2 rows have the wrong number of columns") as caught:
        parse_csv(csv_bytes(rows))
    assert caught.value.problems == ["row 5: 10 columns, expected 11", "row 9: 12 columns, expected 11"]
    assert "row 5: 10 columns" in str(caught.value)


def test_wrong_column_count_lists_at_most_ten_rows() -> None:
    rows = [r[:-1] for r in _rows(30)]
    with pytest.raises(DataValidationError, match="30 rows have the wrong number") as caught:
        parse_csv(csv_bytes(rows))
    assert len(caught.value.problems) == 10
    assert caught.value.problems[0].startswith("row 1:")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\n\n\n", id="blank-lines"),
        pytest.param(csv_bytes([], header=list(COLUMNS)), id="header-only"),
    ],
)
def test_no_data_rows_is_a_hard_failure(raw: bytes) -> None:
    with pytest.raises(DataValidationError, match="the file holds no data rows"):
        parse_csv(raw)


@pytest.mark.parametrize(("label", "only"), [(2, "benign"), (4, "malignant")])
def test_one_class_only_is_a_hard_failure(label: int, only: str) -> None:
    base = BENIGN_ROW if label == 2 else MALIGNANT_ROW
    rows = [[i + 1, *base, label] for i in range(40)]
    with pytest.raises(DataValidationError, match=f"all 40 valid rows are {only}: training needs both classes"):
        parse_csv(csv_bytes(rows))


def test_non_utf8_bytes_are_a_hard_failure() -> None:
    raw = csv_bytes(_rows(10))
    bad = raw[:30] + "é".encode("latin-1") + raw[30:]
    with pytest.raises(DataValidationError, match="not UTF-8 text \\(byte 30\\)"):
        parse_csv(bad)


@pytest.mark.parametrize("n_bad", [11, 20, 200])
def test_more_than_the_allowed_share_of_invalid_rows_is_a_hard_failure(n_bad: int) -> None:
    rows = _rows(200)
    for i in range(n_bad):
        rows[i][1] = 0
    with pytest.raises(
        DataValidationError, match=f"{n_bad} of 200 rows are invalid, more than the allowed share of 5%"
    ) as caught:
        parse_csv(csv_bytes(rows))
    problems = caught.value.problems
    assert len(problems) == min(n_bad, 10)
    assert problems[0] == "row 1: clump_thickness: must be between 1 and 10, got 0"
    assert problems[1].startswith("row 2: clump_thickness")
    assert "row 1: clump_thickness" in str(caught.value)


def test_the_allowed_share_is_a_parameter() -> None:
    rows = _rows(200)
    for i in range(20):
        rows[i][1] = 0
    assert parse_csv(csv_bytes(rows), max_invalid_share=0.1).report.rows_kept == 180
    with pytest.raises(DataValidationError, match="more than the allowed share of 1%"):
        parse_csv(csv_bytes(rows[:100]), max_invalid_share=0.01)


def test_exactly_the_allowed_share_is_tolerated() -> None:
    rows = _rows(200)
    for i in range(10):  # 10 of 200 = 5 %
        rows[i][1] = 0
    assert parse_csv(csv_bytes(rows)).report.rows_kept == 190


# --- bad rows dropped and reported -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "field", "reason"),
    [
        pytest.param(1, 11, "clump_thickness", "must be between 1 and 10, got 11", id="above-range"),
        pytest.param(2, 0, "uniformity_of_cell_size", "must be between 1 and 10, got 0", id="zero"),
        pytest.param(3, -2, "uniformity_of_cell_shape", "must be between 1 and 10, got -2", id="negative"),
        pytest.param(4, "x", "marginal_adhesion", "must be an integer, got 'x'", id="text"),
        pytest.param(5, "5.0", "single_epithelial_cell_size", "must be an integer, got '5.0'", id="decimal"),
        pytest.param(7, "?", "bland_chromatin", "missing value (only bare_nuclei may be missing)", id="missing"),
        pytest.param(9, "", "mitoses", "missing value (only bare_nuclei may be missing)", id="empty"),
        pytest.param(10, 3, "class", "class must be 2 (benign) or 4 (malignant), got 3", id="class-3"),
        pytest.param(10, "malignant", "class", "class must be 2 (benign) or 4 (malignant), got 'malignant'", id="cls"),
        pytest.param(10, "?", "class", "class must be 2 (benign) or 4 (malignant), got '?'", id="class-missing"),
        pytest.param(0, "12a", "sample_id", "must be a positive integer, got '12a'", id="sample-id"),
    ],
)
def test_a_bad_row_is_dropped_and_reported(column: int, value: object, field: str, reason: str) -> None:
    rows = _with(_rows(200), 6, column, value)
    dataset = parse_csv(csv_bytes(rows))
    report = dataset.report
    assert [(d.row, d.field, d.reason) for d in report.dropped] == [(7, field, reason)]
    assert (report.rows_read, report.rows_kept) == (200, 199)
    assert sum(report.dropped_by_reason.values()) == 1
    assert next(iter(report.dropped_by_reason)).startswith(f"{field}: ")
    assert dataset.X.shape == (199, len(FEATURES))
    assert rows[6][0] not in dataset.sample_ids.tolist()
    assert "199/200 rows kept (1 dropped)" in report.summary()


def test_several_bad_rows_are_counted_by_reason() -> None:
    rows = _with(_rows(200), 3, 1, 11)
    rows = _with(rows, 10, 1, 12)
    rows = _with(rows, 20, 10, 3)
    rows = _with(rows, 30, 2, "?")
    report = parse_csv(csv_bytes(rows)).report
    assert [(d.row, d.field) for d in report.dropped] == [
        (4, "clump_thickness"),
        (11, "clump_thickness"),
        (21, "class"),
        (31, "uniformity_of_cell_size"),
    ]
    assert report.dropped_by_reason == {
        "clump_thickness: must be between 1 and 10": 2,
        "class: class must be 2 (benign) or 4 (malignant)": 1,
        "uniformity_of_cell_size: missing value (only bare_nuclei may be missing)": 1,
    }
    assert report.rows_kept == 196


@pytest.mark.parametrize("marker", ["?", "", " ? "])
def test_missing_bare_nuclei_is_kept_as_nan_and_counted(marker: str) -> None:
    rows = _rows(100)
    for i in (0, 5, 50):
        rows[i][BARE_NUCLEI] = marker
    dataset = parse_csv(csv_bytes(rows))
    assert dataset.report.rows_kept == 100
    assert dataset.report.dropped == []
    assert dataset.report.missing == {**dict.fromkeys(FEATURES, 0), "bare_nuclei": 3}
    column = dataset.X[:, FEATURES.index("bare_nuclei")]
    assert np.isnan(column).nonzero()[0].tolist() == [0, 5, 50]
    assert np.isnan(dataset.X).sum() == 3
    assert "3 missing values imputed" in dataset.report.summary()


# --- duplicates are reported, not dropped ------------------------------------------------------------------------


def test_duplicate_sample_ids_are_reported_with_row_numbers_and_kept() -> None:
    rows = _rows(100)
    rows[40][0] = rows[2][0]  # same id, different scores
    rows[42][0] = rows[2][0]
    assert len({tuple(rows[i][1:]) for i in (2, 40, 42)}) == 3
    dataset = parse_csv(csv_bytes(rows))
    report = dataset.report
    assert report.duplicate_sample_ids == {str(rows[2][0]): [3, 41, 43]}
    assert report.duplicate_rows == 0
    assert report.rows_kept == 100
    assert dataset.sample_ids.tolist().count(rows[2][0]) == 3


def test_identical_rows_are_reported_with_row_numbers_and_kept() -> None:
    rows = _rows(100)
    rows += [list(rows[9]), list(rows[9]), list(rows[20])]  # rows 101, 102 repeat row 10; row 103 repeats row 21
    dataset = parse_csv(csv_bytes(rows))
    report = dataset.report
    assert report.duplicate_rows == 3
    assert report.duplicate_sample_ids == {str(rows[9][0]): [10, 101, 102], str(rows[20][0]): [21, 103]}
    assert report.rows_kept == 103
    assert dataset.X.shape[0] == 103


def test_identical_rows_are_recognised_despite_spaces() -> None:
    rows = _rows(20)
    raw = csv_bytes(rows) + (",".join(f" {c} " for c in rows[0]) + "\n").encode()
    assert parse_csv(raw).report.duplicate_rows == 1


# --- the real data set -------------------------------------------------------------------------------------------


def test_the_real_data_set(real_csv: bytes, real_dataset: Dataset) -> None:
    report = real_dataset.report
    assert report.rows_read == 699
    assert report.rows_kept == 699
    assert report.dropped == []
    assert report.header is False
    assert report.class_balance == {"benign": 458, "malignant": 241}
    assert report.missing == {**dict.fromkeys(FEATURES, 0), "bare_nuclei": 16}
    assert report.sha256 == hashlib.sha256(real_csv).hexdigest()
    assert real_dataset.X.shape == (699, 9)
    assert int(np.isnan(real_dataset.X).sum()) == 16
    assert int(real_dataset.y.sum()) == 241


def test_the_real_data_set_has_known_duplicates(real_dataset: Dataset) -> None:
    report = real_dataset.report
    assert report.duplicate_rows == 8
    assert len(report.duplicate_sample_ids) == 46
    assert all(len(rows) >= 2 and rows == sorted(rows) for rows in report.duplicate_sample_ids.values())


def test_the_real_data_set_scores_are_within_range(real_dataset: Dataset) -> None:
    present = real_dataset.X[~np.isnan(real_dataset.X)]
    assert present.min() == 1
    assert present.max() == 10
    assert np.array_equal(present, np.round(present))
    assert set(real_dataset.y.tolist()) == {0, 1}


# --- several files: the training CSV and the labelled cases ------------------------------------------------------

TRAINING = "s3://data/wisconsin.data"
LABELLED = "s3://data/labelled/labelled-20261201T020000Z.csv"


def test_combining_the_training_data_alone_changes_nothing(real_dataset: Dataset) -> None:
    combined = combine([real_dataset])
    assert combined.report == real_dataset.report  # counts, duplicates (46), conflicts, sha256: today's numbers
    assert np.array_equal(combined.X, real_dataset.X, equal_nan=True)
    assert combined.y.tolist() == real_dataset.y.tolist()
    assert combined.sample_ids.tolist() == real_dataset.sample_ids.tolist()


def test_combined_files_add_up_and_a_sample_id_in_two_files_is_a_duplicate_naming_both() -> None:
    rows = _rows(100)
    labelled: list[list[object]] = [
        [10**15 + 1, *BENIGN_ROW, 2],
        list(rows[8]),  # identical to training row 9
        [rows[5][0], *BENIGN_ROW, 2],  # training row 6 has this id, malignant
    ]
    training = parse_csv(csv_bytes(rows), source=TRAINING)
    cases = parse_csv(csv_bytes(labelled, header=list(COLUMNS)), source=LABELLED, need_both_classes=False)

    combined = combine([training, cases])

    assert combined.X.shape == (103, len(FEATURES))
    assert combined.sample_ids.tolist() == [r[0] for r in rows + labelled]
    assert combined.y.tolist() == [*training.y.tolist(), 0, 0, 0]
    report = combined.report
    assert [(f.source, f.rows_read, f.rows_kept) for f in report.files] == [(TRAINING, 100, 100), (LABELLED, 3, 3)]
    assert (report.rows_read, report.rows_kept, report.class_balance) == (103, 103, {"benign": 53, "malignant": 50})
    assert report.duplicate_sample_ids == {str(rows[8][0]): [9, 3], str(rows[5][0]): [6, 4]}
    assert report.conflicting_sample_ids == {str(rows[5][0]): [6, 4]}
    assert report.sample_id_rows(str(rows[5][0])) == [f"{TRAINING} row 6", f"{LABELLED} row 4"]
    assert report.duplicate_rows == 1
    assert report.sha256 not in {training.report.sha256, cases.report.sha256}
    assert "103/103 rows kept from 2 files" in report.summary()


def test_a_bad_labelled_file_names_the_file_and_the_row() -> None:
    labelled = [[10**15 + i, *BENIGN_ROW, 2] for i in range(10)]
    labelled[6][-1] = 3
    raw = csv_bytes(labelled, header=list(COLUMNS))
    with pytest.raises(DataValidationError) as caught:
        parse_csv(raw, source=LABELLED, need_both_classes=False)
    assert str(caught.value).splitlines()[0] == (
        f"{LABELLED}: 1 of 10 rows are invalid, more than the allowed share of 5% (max_invalid_share); "
        "most often class: class must be 2 (benign) or 4 (malignant) (1 rows)"
    )
    assert caught.value.problems == ["row 8: class: class must be 2 (benign) or 4 (malignant), got 3"]
    tolerated = combine(
        [parse_csv(csv_bytes(_rows(40))), parse_csv(raw, 0.1, source=LABELLED, need_both_classes=False)]
    )
    assert [(d.file, d.row, d.field) for d in tolerated.report.dropped] == [(LABELLED, 8, "class")]
