"""Read and validate the training CSV (UCI layout) into arrays and a validation report; combine several files
(the training CSV and the labelled cases the monitor adds) into one data set whose report names each file."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from oncology_model import textfiles
from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN, Prediction
from oncology_model.errors import DataValidationError

ID_COLUMN = "sample_id"
CLASS_COLUMN = "class"
COLUMNS: tuple[str, ...] = (ID_COLUMN, *FEATURES, CLASS_COLUMN)
MISSING_MARKERS = frozenset({"?", ""})
IMPUTABLE = frozenset({"bare_nuclei"})
_ID_ALIASES = frozenset({"sample_id", "sample_code_number", "id"})
_MAX_LISTED = 10
#: An integer as the file may spell it: ASCII digits only, an optional minus, at most 18 significant digits
#: (so it fits an int64); `_DIGITS` is any run of ASCII digits, for the message about a too-long one.
_INTEGER = re.compile(r"(-?)0*([0-9]{1,18})")
_DIGITS = re.compile(r"-?[0-9]+")


class DroppedRow(BaseModel):
    """One row left out of training, and why."""

    row: int = Field(description="1-based line number in the file")
    field: str
    reason: str
    file: str = Field(default="", description="the file the row is in ('' when the data had no name)")


class FileSummary(BaseModel):
    """One file a data set was read from: its name, content hash and rows."""

    source: str = Field(description="where the file came from, e.g. its s3:// URI ('' when it had no name)")
    sha256: str
    rows_read: int
    rows_kept: int


class ValidationReport(BaseModel):
    """What the validation saw: counts, drops with row numbers, duplicates, balance, missing values."""

    sha256: str
    rows_read: int
    rows_kept: int
    dropped: list[DroppedRow]
    dropped_by_reason: dict[str, int]
    duplicate_sample_ids: dict[str, list[int]] = Field(description="sample id -> row numbers")
    conflicting_sample_ids: dict[str, list[int]] = Field(
        default_factory=dict, description="duplicate sample ids whose rows disagree on the class -> row numbers"
    )
    duplicate_rows: int = Field(description="kept rows identical to an earlier kept row (kept, but counted)")
    class_balance: dict[str, int]
    missing: dict[str, int] = Field(description="missing values kept for imputation, per feature")
    header: bool = Field(description="the file began with a header row (several files: every one did)")
    files: list[FileSummary] = Field(default_factory=list, description="the files read, in order")
    sample_id_files: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the file of each row in duplicate_sample_ids, in the same order (when the files have names)",
    )

    def sample_id_rows(self, sample_id: str) -> list[str]:
        """Where a duplicate sample id is: `<file> row <n>` (or `row <n>` in data without a name), in order."""
        files = self.sample_id_files.get(sample_id) or [""] * len(self.duplicate_sample_ids[sample_id])
        return [
            f"{f} row {n}" if f else f"row {n}"
            for f, n in zip(files, self.duplicate_sample_ids[sample_id], strict=True)
        ]

    def summary(self) -> str:
        """One line for logs."""
        balance = ", ".join(f"{k} {v}" for k, v in self.class_balance.items())
        files = f" from {len(self.files)} files" if len(self.files) > 1 else ""
        return (
            f"{self.rows_kept}/{self.rows_read} rows kept{files} ({len(self.dropped)} dropped), {balance}, "
            f"{sum(self.missing.values())} missing values imputed, "
            f"{len(self.duplicate_sample_ids)} duplicate sample ids "
            f"({len(self.conflicting_sample_ids)} with conflicting classes), sha256 {self.sha256[:12]}"
        )


@dataclass(frozen=True)
class Dataset:
    """Validated training data: features (NaN where missing), labels (1 = malignant) and sample ids, with the
    file and line each row came from."""

    X: NDArray[np.float64]
    y: NDArray[np.int64]
    sample_ids: NDArray[np.int64]
    report: ValidationReport
    row_numbers: NDArray[np.int64]
    row_files: tuple[str, ...]


def _integer(text: str) -> int | None:
    """The integer `text` spells in ASCII digits (at most 18 significant ones), else None."""
    match = _INTEGER.fullmatch(text)
    return int(match[1] + match[2]) if match else None


def _decode(raw: bytes) -> str:
    """The file as text (UTF-8, with or without a byte-order mark); DataValidationError naming the row."""
    try:
        return textfiles.utf8_text(raw)
    except textfiles.NotUtf8 as exc:
        if exc.bom:
            raise DataValidationError(
                f"the file is not UTF-8 text: it starts with a {exc.bom} byte-order mark; save it as UTF-8"
            ) from None
        raise DataValidationError(
            f"the file is not UTF-8 text (byte {exc.byte}): save it as UTF-8", [f"row {exc.row}: {exc.reason}"]
        ) from None


def _records(text: str) -> list[tuple[int, list[str]]]:
    """The non-blank CSV records with the line each starts on; DataValidationError when the CSV is broken."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if any(cells):
                records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataValidationError(
            "the file is not valid CSV (an overlong field or an unclosed quote?)", [f"row {start}: {exc}"]
        ) from None
    return records


def _is_header(cells: list[str]) -> bool:
    first = cells[0].strip()
    return not _DIGITS.fullmatch(first) and first not in MISSING_MARKERS


def _check_header(cells: list[str]) -> None:
    names = [c.strip().lower() for c in cells]
    if len(names) != len(COLUMNS) or names[0] not in _ID_ALIASES or tuple(names[1:]) != COLUMNS[1:]:
        shown = ", ".join(textfiles.shown(c) for c in cells[: len(COLUMNS) + 1]) + (
            ", ..." if len(cells) > len(COLUMNS) else ""
        )
        raise DataValidationError(
            "header row does not match the expected columns",
            [f"row 1: expected {', '.join(COLUMNS)}; got {shown}"],
        )


def _parse_score(text: str, name: str) -> float:
    """A feature score, NaN when missing; raises ValueError with the rule broken."""
    value = text.strip()
    if value in MISSING_MARKERS:
        if name in IMPUTABLE:
            return float("nan")
        raise ValueError("missing value (only bare_nuclei may be missing)")
    score = _integer(value)
    if score is None and not _DIGITS.fullmatch(value):
        raise ValueError(f"must be an integer, got {textfiles.shown(value)}")
    if score is None or not SCORE_MIN <= score <= SCORE_MAX:
        raise ValueError(
            f"must be between {SCORE_MIN} and {SCORE_MAX}, got {textfiles.shown(value) if score is None else score}"
        )
    return float(score)


def _parse_row(cells: list[str]) -> tuple[int, list[float], int]:
    """Sample id, scores and label (1 = malignant); raises ValueError('field: rule')."""
    id_text = cells[0].strip()
    sample_id = _integer(id_text)
    if sample_id is None and _DIGITS.fullmatch(id_text):
        raise ValueError(f"{ID_COLUMN}: must have at most 18 digits, got {textfiles.shown(id_text)}")
    if sample_id is None or sample_id <= 0:
        raise ValueError(f"{ID_COLUMN}: must be a positive integer, got {textfiles.shown(id_text)}")
    scores = []
    for name, text in zip(FEATURES, cells[1:-1], strict=True):
        try:
            scores.append(_parse_score(text, name))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    label_text = cells[-1].strip()
    label = _integer(label_text)
    try:
        prediction = Prediction.from_class(label)
    except ValueError:
        shown = textfiles.shown(label_text) if label is None else label
        raise ValueError(f"{CLASS_COLUMN}: class must be 2 (benign) or 4 (malignant), got {shown}") from None
    return sample_id, scores, int(prediction is Prediction.MALIGNANT)


def _check_shares(max_invalid_share: float, max_missing_share: float) -> None:
    if not 0 <= max_invalid_share <= 1:
        raise ValueError(f"max_invalid_share must be between 0 and 1, got {max_invalid_share}")
    if not 0 <= max_missing_share < 1:
        raise ValueError(f"max_missing_share must be at least 0 and below 1, got {max_missing_share}")


def parse_csv(
    raw: bytes,
    max_invalid_share: float = 0.05,
    max_missing_share: float = 0.05,
    *,
    source: str = "",
    need_both_classes: bool = True,
) -> Dataset:
    """Validate the raw CSV bytes; drop and report a few bad rows, raise DataValidationError on hard failures:
    more than `max_invalid_share` of the rows invalid, or a feature missing (to be imputed) in more than
    `max_missing_share` of the kept rows, or (`need_both_classes`) one class only.

    `source` names the file: in the report, on each dropped row, and at the start of every error message."""
    _check_shares(max_invalid_share, max_missing_share)
    try:
        return _parse(raw, max_invalid_share, max_missing_share, source, need_both_classes)
    except DataValidationError as exc:
        if not source:
            raise
        message = str(exc).partition("\n")[0]  # the message line; the problems follow it
        raise DataValidationError(f"{source}: {message}", exc.problems) from None


def _parse(
    raw: bytes, max_invalid_share: float, max_missing_share: float, source: str, need_both_classes: bool
) -> Dataset:
    sha256 = hashlib.sha256(raw).hexdigest()
    rows = _records(_decode(raw))
    header = bool(rows) and _is_header(rows[0][1])
    if header:
        _check_header(rows[0][1])
        rows = rows[1:]
    if not rows:
        raise DataValidationError("the file holds no data rows")
    bad_width = [
        f"row {n}: {len(cells)} columns, expected {len(COLUMNS)}" for n, cells in rows if len(cells) != len(COLUMNS)
    ]
    if bad_width:
        raise DataValidationError(
            f"{len(bad_width)} rows have the wrong number of columns (expected {len(COLUMNS)}: {', '.join(COLUMNS)})",
            bad_width[:_MAX_LISTED],
        )

    kept: list[int] = []  # row numbers
    ids: list[int] = []
    features: list[list[float]] = []
    labels: list[int] = []
    dropped: list[DroppedRow] = []
    seen_rows: Counter[tuple[str, ...]] = Counter()
    for n, cells in rows:
        try:
            sample_id, scores, label = _parse_row(cells)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            dropped.append(DroppedRow(row=n, field=field, reason=reason, file=source))
            continue
        seen_rows[tuple(c.strip() for c in cells)] += 1
        kept.append(n)
        ids.append(sample_id)
        features.append(scores)
        labels.append(label)

    by_reason = Counter(f"{d.field}: {d.reason.split(',')[0]}" for d in dropped)
    problems = [f"row {d.row}: {d.field}: {d.reason}" for d in dropped[:_MAX_LISTED]]
    if len(dropped) > max_invalid_share * len(rows):
        reason, count = by_reason.most_common(1)[0]
        raise DataValidationError(
            f"{len(dropped)} of {len(rows)} rows are invalid, more than the allowed share of {max_invalid_share:.0%} "
            f"(max_invalid_share); most often {reason} ({count} rows)",
            problems,
        )
    if not labels:
        raise DataValidationError("no valid rows remain", problems)
    counts = Counter(labels)
    if need_both_classes:
        _check_both_classes(labels)

    X = np.asarray(features, dtype=np.float64)
    for i, name in enumerate(FEATURES):
        missing_at = np.isnan(X[:, i]).nonzero()[0]
        if missing_at.size > max_missing_share * len(labels):
            raise DataValidationError(
                f"{name} is missing in {missing_at.size} of {len(labels)} valid rows, more than the allowed share of "
                f"{max_missing_share:.0%} (max_missing_share): a model would learn little from imputed values",
                [f"row {kept[j]}: {name}: missing value" for j in missing_at[:_MAX_LISTED]],
            )
    id_rows: dict[int, list[int]] = {}
    id_labels: dict[int, set[int]] = {}
    for n, sample_id, label in zip(kept, ids, labels, strict=True):
        id_rows.setdefault(sample_id, []).append(n)
        id_labels.setdefault(sample_id, set()).add(label)
    duplicates = {str(k): v for k, v in id_rows.items() if len(v) > 1}
    report = ValidationReport(
        sha256=sha256,
        rows_read=len(rows),
        rows_kept=len(labels),
        dropped=dropped,
        dropped_by_reason=dict(by_reason),
        duplicate_sample_ids=duplicates,
        conflicting_sample_ids={str(k): id_rows[k] for k, v in id_labels.items() if len(v) > 1},
        duplicate_rows=sum(c - 1 for c in seen_rows.values()),
        class_balance={"benign": counts[0], "malignant": counts[1]},
        missing={name: int(np.isnan(X[:, i]).sum()) for i, name in enumerate(FEATURES)},
        header=header,
        files=[FileSummary(source=source, sha256=sha256, rows_read=len(rows), rows_kept=len(labels))],
        sample_id_files={k: [source] * len(v) for k, v in duplicates.items()} if source else {},
    )
    return Dataset(
        X=X,
        y=np.asarray(labels, dtype=np.int64),
        sample_ids=np.asarray(ids, dtype=np.int64),
        report=report,
        row_numbers=np.asarray(kept, dtype=np.int64),
        row_files=(source,) * len(kept),
    )


def _check_both_classes(labels: Sequence[int]) -> None:
    if len(set(labels)) < 2:
        only = Prediction.from_classifier(labels[0]).value
        raise DataValidationError(f"all {len(labels)} valid rows are {only}: training needs both classes")


def load_csv(
    path: Path,
    max_invalid_share: float = 0.05,
    max_missing_share: float = 0.05,
    *,
    source: str = "",
    need_both_classes: bool = True,
) -> Dataset:
    """Read and validate a CSV file (`source`: the name messages give it, see `parse_csv`)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        named = f"{source}: " if source else ""
        raise DataValidationError(f"{named}cannot read {path}: {exc.strerror}") from None
    return parse_csv(raw, max_invalid_share, max_missing_share, source=source, need_both_classes=need_both_classes)


def combine(datasets: Sequence[Dataset]) -> Dataset:
    """One data set from several validated ones, in order: features, labels, sample ids and rows concatenated.

    The report adds up the files' counts and keeps where each problem is: every dropped row names its file, and
    a sample id in more than one file is a duplicate (conflicting when the classes differ) like one repeated
    within a file, its rows named by file (`sample_id_files`). One data set combines to the same arrays, counts
    and sha256; several get the sha256 of their files' sha256s in order. DataValidationError when the rows
    together hold one class only (a file of labelled cases may hold one)."""
    if not datasets:
        raise ValueError("combine: no data sets given")
    reports = [d.report for d in datasets]
    y = np.concatenate([d.y for d in datasets])
    _check_both_classes(y.tolist())
    sample_ids = np.concatenate([d.sample_ids for d in datasets])
    row_numbers = np.concatenate([d.row_numbers for d in datasets])
    row_files = tuple(f for d in datasets for f in d.row_files)
    files = [f for r in reports for f in r.files]
    id_rows: dict[int, list[int]] = {}
    for i, sample_id in enumerate(sample_ids.tolist()):
        id_rows.setdefault(sample_id, []).append(i)
    duplicates = {k: v for k, v in id_rows.items() if len(v) > 1}
    conflicting = [k for k, v in duplicates.items() if len(set(y[v].tolist())) > 1]
    named = any(row_files)
    by_reason: Counter[str] = Counter()
    for r in reports:
        by_reason.update(r.dropped_by_reason)
    report = ValidationReport(
        sha256=reports[0].sha256
        if len(reports) == 1
        else hashlib.sha256("".join(f"{r.sha256}\n" for r in reports).encode()).hexdigest(),
        rows_read=sum(r.rows_read for r in reports),
        rows_kept=len(y),
        dropped=[d for r in reports for d in r.dropped],
        dropped_by_reason=dict(by_reason),
        duplicate_sample_ids={str(k): row_numbers[v].tolist() for k, v in duplicates.items()},
        conflicting_sample_ids={str(k): row_numbers[duplicates[k]].tolist() for k in conflicting},
        duplicate_rows=sum(r.duplicate_rows for r in reports) + _repeated_across(datasets),
        class_balance={"benign": int((y == 0).sum()), "malignant": int((y == 1).sum())},
        missing={name: sum(r.missing.get(name, 0) for r in reports) for name in FEATURES},
        header=all(r.header for r in reports),
        files=files,
        sample_id_files={str(k): [row_files[i] for i in v] for k, v in duplicates.items()} if named else {},
    )
    return Dataset(
        X=np.concatenate([d.X for d in datasets]),
        y=y,
        sample_ids=sample_ids,
        report=report,
        row_numbers=row_numbers,
        row_files=row_files,
    )


def _repeated_across(datasets: Sequence[Dataset]) -> int:
    """Rows identical (sample id, scores, class) to a row of an earlier data set: for each distinct row, the
    number of data sets holding it, minus one (repeats within one data set are that data set's own count)."""
    holders: Counter[tuple[object, ...]] = Counter()
    for d in datasets:
        scores = np.where(np.isnan(d.X), -1.0, d.X)  # -1: missing (scores are 1..10)
        rows = zip(d.sample_ids.tolist(), d.y.tolist(), scores.tolist(), strict=True)
        holders.update({(sample_id, label, *row) for sample_id, label, row in rows})
    return sum(n - 1 for n in holders.values())
