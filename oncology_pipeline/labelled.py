"""Confirmed cases as training data: the labelled files the monitor flow writes and the nightly trains on.

A labelled file has the training layout with a header (`oncology_model.data.COLUMNS`): a sample id, the nine
scores, the class (2 benign, 4 malignant). A case's sample id is derived from its case id (sha256, 52 bits, plus
10^15), so the same case always gets the same id, and no id equals a UCI sample code (at most 8 digits); the
nightly's validation reports an id seen twice across files as a duplicate.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable

from oncology_model.data import COLUMNS
from oncology_model.datamodel import FEATURES
from oncology_pipeline.performance import JoinedCase

#: Labelled sample ids start here; UCI sample codes are far below.
SAMPLE_ID_BASE = 10**15


def sample_id(case: str) -> int:
    """The sample id of a case id in labelled files (always the same for one case)."""
    return SAMPLE_ID_BASE + int(hashlib.sha256(case.encode()).hexdigest()[:13], 16)


def known_ids(files: Iterable[bytes]) -> set[int]:
    """The sample ids in labelled files already written (the first column; the header and other text skipped)."""
    return {
        int(row[0])
        for raw in files
        for row in csv.reader(io.StringIO(raw.decode("utf-8-sig", errors="replace")))
        if row and row[0].strip().isdigit()
    }


def new_cases(cases: Iterable[JoinedCase], known: set[int]) -> list[JoinedCase]:
    """The cases not yet in any labelled file, each once, in case-id order."""
    fresh: dict[int, JoinedCase] = {}
    for case in cases:
        if (number := sample_id(case.case_id)) not in known:
            fresh.setdefault(number, case)
    return sorted(fresh.values(), key=lambda c: c.case_id)


def labelled_csv(cases: Iterable[JoinedCase]) -> bytes:
    """The cases as a labelled file (header, one row per case)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for case in cases:
        writer.writerow([sample_id(case.case_id), *(case.features[name] for name in FEATURES), case.diagnosis])
    return out.getvalue().encode()
