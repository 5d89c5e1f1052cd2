"""Training-data properties: hypothesis mutates the real CSV (sizes, encodings, control bytes, columns, quoting,
numbers, missing values, duplicates, too few rows). Validation returns a report whose counts add up, or raises
DataValidationError naming the rows and the rule; never another exception; and training never gets a feature
that is missing in more than the allowed share of rows."""

from __future__ import annotations

import hashlib
import random
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import UndefinedMetricWarning

from oncology_model.config import TrainingConfig
from oncology_model.data import COLUMNS, IMPUTABLE, Dataset, parse_csv
from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN
from oncology_model.errors import DataValidationError
from oncology_model.evaluation import evaluate
from oncology_model.training import minimum_rows_per_class, train
from tests.support.data import real_data
from tests.support.examples import examples

Rows = list[list[str]]
Draw = Callable[[st.SearchStrategy[Any]], Any]

REAL = real_data()
BASE: Rows = [line.split(",") for line in REAL.decode().splitlines()]
BY_CLASS = {label: [row for row in BASE if row[-1] == label] for label in ("2", "4")}
BARE_NUCLEI = 1 + FEATURES.index("bare_nuclei")
PROBLEM = re.compile(r"row [1-9][0-9]*: \S")
MAX_MESSAGE = 1_000  # characters: messages quote values cut short, never a whole megabyte field
BOUNDED = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])

ODD_VALUES = [
    *["5.0", "1e1", "1E0", "5e-0", "nan", "NaN", "inf", "-inf", "Infinity", "0x5", "+5", "5_0", " 5 ", "05", "-0"],
    *["\u0665", "\u00b2", "\uff15", "?", "", " ", "10", "11", "0", "-1", "9" * 20, "1" * 40, "\x00", "5\x00"],
    *["\x1b[31m5", "\x7f", "é", "\ufeff5", '"5"', "true", "2", "4", "malignant", "\u2028", "5\x0c"],
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]
CONTROL_BYTES = [b"\x00", b"\x01", b"\x1b", b"\r", b"\x0b", b"\x0c", b"\x7f", b"\xc2\x85", b"\xe2\x80\xa8", b"\xff"]


def _some_rows(draw: Draw, rows: Rows) -> list[int]:
    """Indices of a few, a share, or every one of the rows."""
    n = len(rows)
    if not n:
        return []
    k = draw(st.sampled_from([1, 2, max(1, n // 20), n // 20 + 1, n // 2, n - 1, n]) | st.integers(0, n))
    return random.Random(draw(st.integers(0, 2**32))).sample(range(n), min(k, n))


def set_cells(draw: Draw, rows: Rows) -> Rows:
    """One column gets an odd value (float, exponent, nan/inf, unicode digit, control byte, ...) in some rows."""
    column = draw(st.integers(0, len(COLUMNS) - 1))
    value = draw(st.sampled_from(ODD_VALUES) | st.text(max_size=8))
    for i in _some_rows(draw, rows):
        if column < len(rows[i]):
            rows[i][column] = value
    return rows


def missing_in_one_column(draw: Draw, rows: Rows) -> Rows:
    """A feature column is missing (`?`, empty) in none, a few, a share or every one of the rows."""
    column = 1 + draw(st.integers(0, len(FEATURES) - 1)) if draw(st.booleans()) else BARE_NUCLEI
    marker = draw(st.sampled_from(["?", "", " ? "]))
    for i in _some_rows(draw, rows):
        if column < len(rows[i]):
            rows[i][column] = marker
    return rows


def long_field(draw: Draw, rows: Rows) -> Rows:
    """One cell becomes kilobytes to megabytes of one character."""
    size = draw(st.sampled_from([1_000, 131_072, 131_073, 1_000_000, 3_000_000]))
    char = draw(st.sampled_from(["1", "a", " ", '"', ",", "\x00"]))
    if rows:
        row = draw(st.integers(0, len(rows) - 1))
        rows[row][draw(st.integers(0, len(rows[row]) - 1))] = char * size
    return rows


def long_line(draw: Draw, rows: Rows) -> Rows:
    """A row gets thousands of extra columns, or a line of one long unbroken field is added."""
    if draw(st.booleans()) and rows:
        rows[draw(st.integers(0, len(rows) - 1))] += ["1"] * draw(st.sampled_from([1, 1_000, 100_000]))
    else:
        rows.insert(draw(st.integers(0, len(rows))), ["9" * draw(st.sampled_from([10_000, 500_000, 2_000_000]))])
    return rows


def column_count(draw: Draw, rows: Rows) -> Rows:
    """Some rows lose or gain a column."""
    drop = draw(st.booleans())
    for i in _some_rows(draw, rows):
        rows[i] = rows[i][:-1] if drop else [*rows[i], "1"]
    return rows


def quoting(draw: Draw, rows: Rows) -> Rows:
    """Cells get quotes: proper ones, unclosed ones, quoted commas and line breaks."""
    style = draw(st.sampled_from(['"{}"', '"{}', '{}"', '"{},1"', '"{}\n1"', '"{}""x"', '"{}"x']))
    column = draw(st.integers(0, len(COLUMNS) - 1))
    for i in _some_rows(draw, rows):
        if column < len(rows[i]):
            rows[i][column] = style.format(rows[i][column])
    return rows


def conflicting_duplicates(draw: Draw, rows: Rows) -> Rows:
    """Rows repeated with the same sample id (and the same or other scores) and the other class."""
    for i in _some_rows(draw, rows)[:50]:
        copy = list(rows[i])
        copy[-1] = {"2": "4", "4": "2"}.get(copy[-1], "2")
        if draw(st.booleans()) and len(copy) > 2:
            copy[1] = str(draw(st.integers(SCORE_MIN, SCORE_MAX)))
        rows.append(copy)
    return rows


def few_rows(draw: Draw, rows: Rows) -> Rows:
    """Only a handful of rows of each class (none to a few dozen)."""
    benign, malignant = draw(st.integers(0, 30)), draw(st.integers(0, 30))
    return [list(r) for r in BY_CLASS["2"][:benign] + BY_CLASS["4"][:malignant]]


def header(draw: Draw, rows: Rows) -> Rows:
    """A header row: right, upper-case, in the wrong order or with a stray byte-order mark."""
    names = list(COLUMNS)
    kind = draw(st.sampled_from(["right", "upper", "reversed", "bom", "short"]))
    names = {
        "right": names,
        "upper": [n.upper() for n in names],
        "reversed": names[::-1],
        "bom": ["\ufeff" + names[0], *names[1:]],
        "short": names[:-1],
    }[kind]
    return [names, *rows]


Mutation = Callable[[Draw, Rows], Rows]
ROW_DAMAGE: list[Mutation] = [set_cells, missing_in_one_column, conflicting_duplicates, few_rows]
ANY_DAMAGE: list[Mutation] = [*ROW_DAMAGE, long_field, long_line, column_count, quoting, header]


def encode(draw: Draw, rows: Rows) -> bytes:
    """Join, pick line endings and an encoding, and maybe sprinkle control bytes."""
    newline: str = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(",".join(row) for row in rows) + (newline if draw(st.booleans()) else "")
    encoding = draw(st.sampled_from(ENCODINGS) if draw(st.integers(0, 3)) == 0 else st.just("utf-8"))
    raw = text.encode(encoding, errors="replace")
    if encoding in ("latin-1", "cp1252") and draw(st.booleans()):
        raw = raw[: len(raw) // 2] + "é".encode(encoding) + raw[len(raw) // 2 :]
    for _ in range(draw(st.sampled_from([0, 0, 1, 3]))):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from(CONTROL_BYTES)) + raw[at:]
    return raw


@st.composite
def mutated_csv(draw: Draw, mutations: list[Mutation]) -> bytes:
    """The real CSV with one to three of `mutations`, encoded."""
    rows = [list(row) for row in BASE]
    for mutation in draw(st.lists(st.sampled_from(mutations), min_size=1, max_size=3)):
        rows = mutation(draw, rows)
    return encode(draw, rows)


shares = st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.5, 0.99])


def assert_names_rows_and_rule(error: DataValidationError) -> None:
    """One printable message line with the rule; every listed problem starts with its row number."""
    message = str(error).splitlines()[0]
    assert message and message.isprintable() and len(message) <= MAX_MESSAGE, message[:MAX_MESSAGE]
    assert len(error.problems) <= 10
    for problem in error.problems:
        assert PROBLEM.match(problem) and problem.isprintable() and len(problem) <= MAX_MESSAGE, problem[:MAX_MESSAGE]


def assert_counts_add_up(raw: bytes, dataset: Dataset, max_invalid_share: float, max_missing_share: float) -> None:
    """The report's counts agree with each other and with the arrays; the shares were respected."""
    report = dataset.report
    assert report.sha256 == hashlib.sha256(raw).hexdigest()
    assert report.rows_read == report.rows_kept + len(report.dropped)
    assert len(report.dropped) <= max_invalid_share * report.rows_read
    assert sum(report.dropped_by_reason.values()) == len(report.dropped)
    rows = [d.row for d in report.dropped]
    assert rows == sorted(set(rows))
    assert all(f"{d.field}: {d.reason}".isprintable() and len(d.reason) <= MAX_MESSAGE for d in report.dropped)
    assert sum(report.class_balance.values()) == report.rows_kept and min(report.class_balance.values()) > 0
    assert int(dataset.y.sum()) == report.class_balance["malignant"]
    assert dataset.X.shape == (report.rows_kept, len(FEATURES))
    assert dataset.y.shape == dataset.sample_ids.shape == (report.rows_kept,)
    assert (dataset.sample_ids > 0).all()
    present = dataset.X[~np.isnan(dataset.X)]
    assert ((present >= SCORE_MIN) & (present <= SCORE_MAX) & (present == np.round(present))).all()
    for i, name in enumerate(FEATURES):
        missing = int(np.isnan(dataset.X[:, i]).sum())
        assert report.missing[name] == missing
        assert missing <= max_missing_share * report.rows_kept, name
        assert name in IMPUTABLE or missing == 0, name
    duplicates = report.duplicate_sample_ids
    assert all(len(rows) >= 2 for rows in duplicates.values())
    assert sum(len(rows) for rows in duplicates.values()) <= report.rows_kept
    assert report.conflicting_sample_ids.items() <= duplicates.items()
    assert 0 <= report.duplicate_rows < report.rows_kept


@pytest.mark.parametrize("mutations", [ANY_DAMAGE, ROW_DAMAGE], ids=["any-damage", "row-damage"])
@BOUNDED
@given(data=st.data(), max_invalid_share=shares, max_missing_share=shares)
def test_validation_reports_counts_that_add_up_or_names_the_rows_and_the_rule(
    mutations: list[Mutation], data: st.DataObject, max_invalid_share: float, max_missing_share: float
) -> None:
    raw = data.draw(mutated_csv(mutations), label="raw")
    try:
        dataset = parse_csv(raw, max_invalid_share, max_missing_share)
    except DataValidationError as error:
        event("refused: " + re.sub(r"[0-9]+", "N", str(error))[:32])
        assert_names_rows_and_rule(error)
    else:
        event("kept")
        assert_counts_add_up(raw, dataset, max_invalid_share, max_missing_share)


@settings(max_examples=examples(25), deadline=None)
@given(data=st.data(), test_size=st.sampled_from([0.1, 0.2, 0.3, 0.45]), cv_folds=st.sampled_from([2, 3, 5, 10]))
def test_a_model_is_trained_from_enough_rows_and_refused_with_the_rule_otherwise(
    data: st.DataObject, test_size: float, cv_folds: int
) -> None:
    config = TrainingConfig(test_size=test_size, cv_folds=cv_folds)
    needed = minimum_rows_per_class(config)
    benign, malignant = (needed + data.draw(st.integers(-3, 3), label=label) for label in ("benign+", "malignant+"))
    rows = [list(r) for r in BY_CLASS["2"][:benign] + BY_CLASS["4"][:malignant]]
    for row in rows[: data.draw(st.integers(0, min(3, len(rows) // 2)), label="missing")]:  # within the 50 % allowed
        row[BARE_NUCLEI] = "?"
    dataset = parse_csv(("\n".join(",".join(r) for r in rows) + "\n").encode(), max_missing_share=0.5)
    if min(benign, malignant) < needed:
        event("refused: too few rows")
        with pytest.raises(DataValidationError, match=f"too few rows to train: benign {benign}, malignant {malignant}"):
            train(dataset, config)
        return
    event("trained")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        warnings.filterwarnings("error", message=".*least populated class.*")
        warnings.filterwarnings("error", message=".*[Ss]kipping features without any observed values.*")
        model = train(dataset, config)
        proba = model.pipeline.predict_proba(model.split.X_test)[:, 1]
        evaluation = evaluate(model.split.y_test, proba, threshold=model.threshold.threshold, n_bootstrap=100)
    assert set(model.split.y_test.tolist()) == {0, 1}
    assert all(np.isfinite(s) for scores in model.cv_scores.values() for s in scores)
    assert all(np.isfinite(est.value) for est in evaluation.metrics.values())


@pytest.mark.parametrize("marker", ["?", "", " ? "])
@pytest.mark.parametrize("share", [0.0, 0.05, 0.5, 0.99])
def test_a_feature_missing_in_every_row_is_refused_naming_the_column(marker: str, share: float) -> None:
    rows = [list(row) for row in BASE]
    for row in rows:
        row[BARE_NUCLEI] = marker
    raw = ("\n".join(",".join(r) for r in rows) + "\n").encode()
    with pytest.raises(DataValidationError, match="bare_nuclei is missing in 699 of 699 valid rows") as caught:
        parse_csv(raw, max_missing_share=share)
    assert caught.value.problems[0] == "row 1: bare_nuclei: missing value"
    assert len(caught.value.problems) == 10


@pytest.mark.parametrize(
    ("missing", "share", "kept"), [(34, 0.05, True), (35, 0.05, False), (69, 0.1, True), (70, 0.1, False)]
)
def test_the_missing_share_is_a_limit_on_the_kept_rows(missing: int, share: float, kept: bool) -> None:
    rows = [list(row) for row in BASE]
    already = [i for i, row in enumerate(rows) if row[BARE_NUCLEI] == "?"]
    for row in [r for r in rows if r[BARE_NUCLEI] != "?"][: missing - len(already)]:
        row[BARE_NUCLEI] = "?"
    raw = ("\n".join(",".join(r) for r in rows) + "\n").encode()
    if kept:  # 34 of 699 is 4.9 %, 35 is 5.01 %
        assert parse_csv(raw, max_missing_share=share).report.missing["bare_nuclei"] == missing
    else:
        with pytest.raises(DataValidationError, match=f"bare_nuclei is missing in {missing} of 699 valid rows"):
            parse_csv(raw, max_missing_share=share)


@pytest.mark.parametrize("share", [-0.1, 1.0, 2.0])
def test_a_missing_share_outside_zero_to_one_is_a_value_error(share: float) -> None:
    with pytest.raises(ValueError, match="max_missing_share must be at least 0 and below 1"):
        parse_csv(REAL, max_missing_share=share)


def test_duplicate_sample_ids_with_conflicting_classes_are_kept_and_reported() -> None:
    real = parse_csv(REAL).report
    assert len(real.conflicting_sample_ids) == 4  # kept and reported, not dropped
    for sample_id, rows in real.conflicting_sample_ids.items():
        assert real.duplicate_sample_ids[sample_id] == rows
        assert {BASE[row - 1][-1] for row in rows} == {"2", "4"}
    flipped = [*BASE[0][:-1], "4" if BASE[0][-1] == "2" else "2"]
    report = parse_csv(("\n".join(",".join(r) for r in [*BASE, flipped]) + "\n").encode()).report
    assert report.conflicting_sample_ids[BASE[0][0]] == [1, 700]
    assert report.rows_kept == 700 and report.duplicate_rows == real.duplicate_rows
    assert "(5 with conflicting classes)" in report.summary()
