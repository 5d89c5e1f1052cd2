"""Confirmed diagnoses (biopsy results): read and check the outcome CSV files against the prediction log.

A file holds `request_id,diagnosis,confirmed_at` rows: the case id of a logged prediction (`<request_id>` for a
single prediction, `<request_id>/<row>` for a row of a batch), 2 (benign) or 4 (malignant), and an ISO 8601 time
with a time zone. Every row that cannot be used is reported with its file, its line and the rule it breaks; a file
that cannot be read as such CSV is refused as a whole and reported the same way. Nothing raises on bad input.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from oncology_model import textfiles
from oncology_model.datamodel import Prediction
from oncology_model.predictionlog import CASE_ID
from oncology_pipeline.predictionlog import is_verification

OUTCOME_COLUMNS: tuple[str, ...] = ("request_id", "diagnosis", "confirmed_at")
#: Problems listed in the report (the counts hold them all).
MAX_PROBLEMS = 100


class Rule(StrEnum):
    """Why a file or a row of outcomes was not used."""

    NOT_UTF8 = "not_utf8"
    BROKEN_CSV = "broken_csv"
    WRONG_HEADER = "wrong_header"
    WRONG_COLUMNS = "wrong_columns"
    BAD_CASE_ID = "bad_case_id"
    BAD_DIAGNOSIS = "bad_diagnosis"
    BAD_CONFIRMED_AT = "bad_confirmed_at"
    VERIFICATION_CASE = "verification_case"
    UNKNOWN_CASE = "unknown_case"
    CONFIRMED_BEFORE_PREDICTION = "confirmed_before_prediction"
    DUPLICATE = "duplicate"
    CONFLICTING_DIAGNOSIS = "conflicting_diagnosis"


#: What each rule means, for people (reports).
RULES: dict[Rule, str] = {
    Rule.NOT_UTF8: "file refused: not UTF-8 text",
    Rule.BROKEN_CSV: "file refused: not valid CSV",
    Rule.WRONG_HEADER: f"file refused: the header is not {','.join(OUTCOME_COLUMNS)}",
    Rule.WRONG_COLUMNS: f"row without exactly {len(OUTCOME_COLUMNS)} columns",
    Rule.BAD_CASE_ID: "request_id is not a case id (<request id> or <request id>/<row>)",
    Rule.BAD_DIAGNOSIS: "diagnosis is not 2 (benign) or 4 (malignant)",
    Rule.BAD_CONFIRMED_AT: "confirmed_at is not an ISO 8601 time with a time zone",
    Rule.VERIFICATION_CASE: "case id of a deploy verification request (verify-...), not a patient's",
    Rule.UNKNOWN_CASE: "case id not in the prediction log read",
    Rule.CONFIRMED_BEFORE_PREDICTION: "confirmed before the prediction was made",
    Rule.DUPLICATE: "same case and diagnosis as another row: used once",
    Rule.CONFLICTING_DIAGNOSIS: "rows of one case disagree on the diagnosis: none used",
}


class Outcome(BaseModel):
    """One confirmed diagnosis, and the row it was read from."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    diagnosis: Prediction
    confirmed_at: datetime = Field(description="UTC")
    file: str
    row: int = Field(description="1-based line number in the file (the header is line 1)")

    @property
    def class_code(self) -> int:
        """The UCI class code: 2 benign, 4 malignant."""
        return 4 if self.diagnosis is Prediction.MALIGNANT else 2


class OutcomeProblem(BaseModel):
    """A file refused or a row not used, and why."""

    file: str
    row: int = Field(description="1-based line number in the file (the header is line 1)")
    rule: Rule
    detail: str


class OutcomeFile(BaseModel):
    """What one file gave: data rows read (blank lines aside), rows used, and the rule that refused it."""

    file: str
    rows_read: int
    rows_used: int
    refused: Rule | None = None


class OutcomesReport(BaseModel):
    """What reading the outcome files saw: per file, counts per rule, and the first problems by file and row."""

    files: list[OutcomeFile]
    counts: dict[str, int] = Field(description="rule -> files refused or rows not used (each rule, zeros too)")
    problems: list[OutcomeProblem] = Field(description=f"the first {MAX_PROBLEMS}, in file and row order")
    cases_used: int
    conflicting_cases: int = Field(description="case ids none of whose rows were used: their diagnoses disagree")

    @property
    def rows_read(self) -> int:
        """Data rows read in all files."""
        return sum(f.rows_read for f in self.files)

    def summary(self) -> str:
        """One line for logs."""
        refused = sum(1 for f in self.files if f.refused)
        problems = ", ".join(f"{rule} {n}" for rule, n in self.counts.items() if n) or "none"
        return (
            f"{self.cases_used} confirmed cases from {self.rows_read} rows in {len(self.files)} files "
            f"({refused} refused); {self.conflicting_cases} conflicting cases; problems: {problems}"
        )


class _Refused(Exception):
    """A whole file refused (internal: becomes a problem of the report)."""

    def __init__(self, rule: Rule, row: int, detail: str) -> None:
        super().__init__(detail)
        self.rule, self.row, self.detail = rule, row, detail


def _decode(raw: bytes) -> str:
    """The file as text (UTF-8, with or without a byte-order mark)."""
    try:
        return textfiles.utf8_text(raw)
    except textfiles.NotUtf8 as exc:
        if exc.bom:
            raise _Refused(Rule.NOT_UTF8, 1, f"starts with a {exc.bom} byte-order mark: save it as UTF-8") from None
        detail = f"not UTF-8 at byte {exc.byte} ({exc.reason}): save it as UTF-8"
        raise _Refused(Rule.NOT_UTF8, exc.row, detail) from None


def _records(raw: bytes) -> list[tuple[int, list[str]]]:
    """The data rows (non-blank CSV records after the header) with the line each starts on."""
    reader = csv.reader(io.StringIO(_decode(raw), newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise _Refused(Rule.BROKEN_CSV, start, f"not valid CSV ({exc}): a stray or unclosed quote?") from None
    expected = ",".join(OUTCOME_COLUMNS)
    if not records:
        raise _Refused(Rule.WRONG_HEADER, 1, f"the file is empty: expected the header {expected}")
    line, header = records[0]
    if tuple(c.strip().lower() for c in header) != OUTCOME_COLUMNS:
        shown = ", ".join(textfiles.shown(c) for c in header[: len(OUTCOME_COLUMNS) + 1])
        more = ", ..." if len(header) > len(OUTCOME_COLUMNS) + 1 else ""
        raise _Refused(Rule.WRONG_HEADER, line, f"expected the header {expected}; got {shown}{more}")
    return records[1:]


def _utc(moment: datetime, what: str) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{what} has no time zone: prediction times must be timezone-aware")
    return moment.astimezone(UTC)


def _check_row(name: str, line: int, cells: list[str], known_cases: Mapping[str, datetime]) -> Outcome | OutcomeProblem:
    """The row's outcome, or the first rule it breaks (format first, then against the prediction log)."""

    def problem(rule: Rule, detail: str) -> OutcomeProblem:
        return OutcomeProblem(file=name, row=line, rule=rule, detail=detail)

    if len(cells) != len(OUTCOME_COLUMNS):
        return problem(Rule.WRONG_COLUMNS, f"{len(cells)} columns, expected {len(OUTCOME_COLUMNS)}")
    case, diagnosis_text, time_text = (c.strip() for c in cells)
    if not CASE_ID.fullmatch(case):
        return problem(
            Rule.BAD_CASE_ID,
            "request_id must be <request id> or <request id>/<row> (1-128 of A-Z a-z 0-9 . _ : -), "
            f"got {textfiles.shown(case)}",
        )
    if diagnosis_text not in ("2", "4"):
        return problem(
            Rule.BAD_DIAGNOSIS, f"diagnosis must be 2 (benign) or 4 (malignant), got {textfiles.shown(diagnosis_text)}"
        )
    try:
        confirmed_at = datetime.fromisoformat(time_text)
    except ValueError:
        return problem(
            Rule.BAD_CONFIRMED_AT,
            f"confirmed_at must be an ISO 8601 time such as 2026-12-05T10:00:00Z, got {textfiles.shown(time_text)}",
        )
    if confirmed_at.utcoffset() is None:
        return problem(
            Rule.BAD_CONFIRMED_AT, f"confirmed_at has no time zone (add Z or +hh:mm): {textfiles.shown(time_text)}"
        )
    if is_verification(case):
        return problem(
            Rule.VERIFICATION_CASE,
            f"case {textfiles.shown(case)} is a deploy verification request (verify-...), not a patient's case",
        )
    predicted_at = known_cases.get(case)
    if predicted_at is None:
        return problem(Rule.UNKNOWN_CASE, f"case {textfiles.shown(case)} is not in the prediction log read")
    confirmed_at = confirmed_at.astimezone(UTC)
    predicted_at = _utc(predicted_at, f"the prediction time of {case!r}")
    if confirmed_at < predicted_at:
        return problem(
            Rule.CONFIRMED_BEFORE_PREDICTION,
            f"case {textfiles.shown(case)} confirmed at {confirmed_at.isoformat()}, before its prediction at "
            f"{predicted_at.isoformat()}",
        )
    diagnosis = Prediction.from_class(int(diagnosis_text))
    return Outcome(case_id=case, diagnosis=diagnosis, confirmed_at=confirmed_at, file=name, row=line)


def _where(outcome: Outcome) -> str:
    return f"{outcome.file} row {outcome.row}"


def _resolve(
    by_case: dict[str, list[tuple[int, Outcome]]],
) -> tuple[dict[str, tuple[int, Outcome]], list[tuple[int, OutcomeProblem]], int]:
    """One outcome per case: duplicates used once (the earliest confirmation, the first read on a tie), conflicting
    cases not at all. Returns the outcomes and the problems (each with its file's index), and the number of
    conflicting cases."""
    used: dict[str, tuple[int, Outcome]] = {}
    problems: list[tuple[int, OutcomeProblem]] = []
    conflicting = 0
    for case, rows in by_case.items():
        if len({o.diagnosis for _, o in rows}) > 1:
            conflicting += 1
            listed = "; ".join(f"{o.class_code} at {_where(o)}" for _, o in rows)
            detail = f"case {textfiles.shown(case)} has conflicting diagnoses, none used: {listed}"
            problems += [
                (i, OutcomeProblem(file=o.file, row=o.row, rule=Rule.CONFLICTING_DIAGNOSIS, detail=detail))
                for i, o in rows
            ]
            continue
        kept = min(rows, key=lambda row: row[1].confirmed_at)  # min() keeps the first of equals
        used[case] = kept
        detail = f"case {textfiles.shown(case)} again with the same diagnosis: used once, from {_where(kept[1])}"
        problems += [
            (i, OutcomeProblem(file=o.file, row=o.row, rule=Rule.DUPLICATE, detail=detail))
            for i, o in rows
            if o is not kept[1]
        ]
    return used, problems, conflicting


def read_outcomes(
    files: Sequence[tuple[str, bytes]], known_cases: Mapping[str, datetime]
) -> tuple[dict[str, Outcome], OutcomesReport]:
    """The usable confirmed diagnoses by case id, and the report of everything not used.

    Args:
        files: (name, content) of each outcome file, in the order to read them (the name is only reported).
        known_cases: the prediction time (timezone-aware) of each case id in the prediction log read; an outcome
            of any other case is reported as `unknown_case`.

    A case confirmed in several rows with the same diagnosis is used once (the earliest confirmation), the other
    rows are counted as `duplicate`; a case whose rows disagree is not used at all (`conflicting_diagnosis`, every
    row listed). Raises ValueError only when a prediction time in `known_cases` has no time zone (a caller's bug).
    """
    problems: list[tuple[int, OutcomeProblem]] = []
    stats: list[OutcomeFile] = []
    by_case: dict[str, list[tuple[int, Outcome]]] = {}
    for index, (name, raw) in enumerate(files):
        try:
            records = _records(raw)
        except _Refused as refused:
            problems.append(
                (index, OutcomeProblem(file=name, row=refused.row, rule=refused.rule, detail=refused.detail))
            )
            stats.append(OutcomeFile(file=name, rows_read=0, rows_used=0, refused=refused.rule))
            continue
        stats.append(OutcomeFile(file=name, rows_read=len(records), rows_used=0))
        for line, cells in records:
            checked = _check_row(name, line, cells, known_cases)
            if isinstance(checked, Outcome):
                by_case.setdefault(checked.case_id, []).append((index, checked))
            else:
                problems.append((index, checked))
    used, resolved, conflicting = _resolve(by_case)
    problems += resolved
    problems.sort(key=lambda p: (p[0], p[1].row))
    used_per_file = Counter(i for i, _ in used.values())
    for index, stat in enumerate(stats):
        stat.rows_used = used_per_file[index]
    counts = Counter(p.rule for _, p in problems)
    report = OutcomesReport(
        files=stats,
        counts={str(rule): counts[rule] for rule in Rule},
        problems=[p for _, p in problems[:MAX_PROBLEMS]],
        cases_used=len(used),
        conflicting_cases=conflicting,
    )
    return {case: outcome for case, (_, outcome) in used.items()}, report
