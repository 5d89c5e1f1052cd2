"""Read and validate the training CSV (UCI layout) into arrays and a validation report."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN, Prediction
from oncology_model.errors import DataValidationError

ID_COLUMN = "sample_id"
CLASS_COLUMN = "class"
COLUMNS: tuple[str, ...] = (ID_COLUMN, *FEATURES, CLASS_COLUMN)
MISSING_MARKERS = frozenset({"?", ""})
IMPUTABLE = frozenset({"bare_nuclei"})
_ID_ALIASES = frozenset({"sample_id", "sample_code_number", "id"})
_MAX_LISTED = 10


class DroppedRow(BaseModel):
    """One row left out of training, and why."""

    row: int = Field(description="1-based line number in the file")
    field: str
    reason: str


class ValidationReport(BaseModel):
    """What the validation saw: counts, drops with row numbers, duplicates, balance, missing values."""

    sha256: str
    rows_read: int
    rows_kept: int
    dropped: list[DroppedRow]
    dropped_by_reason: dict[str, int]
    duplicate_sample_ids: dict[str, list[int]] = Field(description="sample id -> row numbers")
    duplicate_rows: int = Field(description="rows identical to an earlier row (kept, but counted)")
    class_balance: dict[str, int]
    missing: dict[str, int] = Field(description="missing values kept for imputation, per feature")
    header: bool

    def summary(self) -> str:
        """One line for logs."""
        balance = ", ".join(f"{k} {v}" for k, v in self.class_balance.items())
        return (
            f"{self.rows_kept}/{self.rows_read} rows kept ({len(self.dropped)} dropped), {balance}, "
            f"{sum(self.missing.values())} missing values imputed, "
            f"{len(self.duplicate_sample_ids)} duplicate sample ids, sha256 {self.sha256[:12]}"
        )


@dataclass(frozen=True)
class Dataset:
    """Validated training data: features (NaN where missing), labels (1 = malignant) and sample ids."""

    X: NDArray[np.float64]
    y: NDArray[np.int64]
    sample_ids: NDArray[np.int64]
    report: ValidationReport


def _is_header(cells: list[str]) -> bool:
    return bool(cells) and not cells[0].strip().lstrip("-").isdigit() and cells[0].strip() not in MISSING_MARKERS


def _check_header(cells: list[str]) -> None:
    names = [c.strip().lower() for c in cells]
    if len(names) != len(COLUMNS) or names[0] not in _ID_ALIASES or tuple(names[1:]) != COLUMNS[1:]:
        raise DataValidationError(
            "header row does not match the expected columns",
            [f"row 1: expected {', '.join(COLUMNS)}; got {', '.join(cells)}"],
        )


def _parse_score(text: str, name: str) -> float:
    """A feature score, NaN when missing; raises ValueError with the rule broken."""
    value = text.strip()
    if value in MISSING_MARKERS:
        if name in IMPUTABLE:
            return float("nan")
        raise ValueError("missing value (only bare_nuclei may be missing)")
    if not value.lstrip("-").isdigit():
        raise ValueError(f"must be an integer, got {value!r}")
    score = int(value)
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise ValueError(f"must be between {SCORE_MIN} and {SCORE_MAX}, got {score}")
    return float(score)


def _parse_row(cells: list[str]) -> tuple[int, list[float], int]:
    """Sample id, scores and label (1 = malignant); raises ValueError('field: rule')."""
    sample_id = cells[0].strip()
    if not sample_id.isdigit() or int(sample_id) == 0:
        raise ValueError(f"{ID_COLUMN}: must be a positive integer, got {sample_id!r}")
    scores = []
    for name, text in zip(FEATURES, cells[1:-1], strict=True):
        try:
            scores.append(_parse_score(text, name))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    label_text = cells[-1].strip()
    try:
        prediction = Prediction.from_class(int(label_text) if label_text.isdigit() else label_text)
    except ValueError as exc:
        raise ValueError(f"{CLASS_COLUMN}: {exc}") from None
    return int(sample_id), scores, int(prediction is Prediction.MALIGNANT)


def parse_csv(raw: bytes, max_invalid_share: float = 0.05) -> Dataset:
    """Validate the raw CSV bytes; drop and report a few bad rows, raise DataValidationError on hard failures."""
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"the file is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    rows = [(n, cells) for n, cells in enumerate(csv.reader(io.StringIO(text)), start=1) if any(cells)]
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

    ids: list[int] = []
    features: list[list[float]] = []
    labels: list[int] = []
    dropped: list[DroppedRow] = []
    id_rows: dict[int, list[int]] = {}
    seen_rows: Counter[tuple[str, ...]] = Counter()
    for n, cells in rows:
        seen_rows[tuple(c.strip() for c in cells)] += 1
        try:
            sample_id, scores, label = _parse_row(cells)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            dropped.append(DroppedRow(row=n, field=field, reason=reason))
            continue
        id_rows.setdefault(sample_id, []).append(n)
        ids.append(sample_id)
        features.append(scores)
        labels.append(label)

    problems = [f"row {d.row}: {d.field}: {d.reason}" for d in dropped[:_MAX_LISTED]]
    if len(dropped) > max_invalid_share * len(rows):
        raise DataValidationError(
            f"{len(dropped)} of {len(rows)} rows are invalid, more than the allowed share of {max_invalid_share:.0%}",
            problems,
        )
    if not labels:
        raise DataValidationError("no valid rows remain", problems)
    counts = Counter(labels)
    if len(counts) < 2:
        only = Prediction.from_classifier(labels[0]).value
        raise DataValidationError(f"all {len(labels)} valid rows are {only}: training needs both classes")

    X = np.asarray(features, dtype=np.float64)
    report = ValidationReport(
        sha256=sha256,
        rows_read=len(rows),
        rows_kept=len(labels),
        dropped=dropped,
        dropped_by_reason=dict(Counter(f"{d.field}: {d.reason.split(',')[0]}" for d in dropped)),
        duplicate_sample_ids={str(k): v for k, v in id_rows.items() if len(v) > 1},
        duplicate_rows=sum(c - 1 for c in seen_rows.values()),
        class_balance={"benign": counts[0], "malignant": counts[1]},
        missing={name: int(np.isnan(X[:, i]).sum()) for i, name in enumerate(FEATURES)},
        header=header,
    )
    return Dataset(X=X, y=np.asarray(labels, dtype=np.int64), sample_ids=np.asarray(ids, dtype=np.int64), report=report)


def load_csv(path: Path, max_invalid_share: float = 0.05) -> Dataset:
    """Read and validate a CSV file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataValidationError(f"cannot read {path}: {exc.strerror}") from None
    return parse_csv(raw, max_invalid_share)
