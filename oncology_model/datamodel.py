"""The request data model: a tumor's nine cytology scores, and the prediction."""

from __future__ import annotations

from enum import StrEnum
from numbers import Integral
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

FEATURES: tuple[str, ...] = (
    "clump_thickness",
    "uniformity_of_cell_size",
    "uniformity_of_cell_shape",
    "marginal_adhesion",
    "single_epithelial_cell_size",
    "bare_nuclei",
    "bland_chromatin",
    "normal_nucleoli",
    "mitoses",
)
SCORE_MIN, SCORE_MAX = 1, 10


def _no_bool_or_str(value: Any) -> Any:
    """Refuse booleans and strings before pydantic's integer check (which refuses 2.5 but takes 2.0)."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    if isinstance(value, str):
        raise ValueError("must be a JSON number, not a string")
    return value


Score = Annotated[int, Field(ge=SCORE_MIN, le=SCORE_MAX), BeforeValidator(_no_bool_or_str)]

EXAMPLE_BENIGN: dict[str, Any] = dict(zip(FEATURES, (5, 1, 1, 1, 2, 1, 3, 1, 1), strict=True))
EXAMPLE_MALIGNANT: dict[str, Any] = dict(zip(FEATURES, (8, 10, 10, 8, 7, 10, 9, 7, 1), strict=True))


class Tumor(BaseModel):
    """The nine cytology scores of one fine-needle aspirate, each an integer 1..10."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT]}
    )

    clump_thickness: Score
    uniformity_of_cell_size: Score
    uniformity_of_cell_shape: Score
    marginal_adhesion: Score
    single_epithelial_cell_size: Score
    bare_nuclei: Score
    bland_chromatin: Score
    normal_nucleoli: Score
    mitoses: Score

    def as_row(self) -> tuple[int, ...]:
        """The scores in feature order."""
        return tuple(getattr(self, name) for name in FEATURES)


class Prediction(StrEnum):
    """The classifier's answer."""

    BENIGN = "benign"
    MALIGNANT = "malignant"

    @classmethod
    def from_class(cls, value: object) -> Prediction:
        """From the UCI class code: 2 is benign, 4 is malignant."""
        mapping = {2: cls.BENIGN, 4: cls.MALIGNANT}
        if not isinstance(value, Integral) or isinstance(value, bool) or int(value) not in mapping:
            raise ValueError(f"class must be 2 (benign) or 4 (malignant), got {value!r}")
        return mapping[int(value)]

    @classmethod
    def from_classifier(cls, value: object) -> Prediction:
        """From the classifier's label: 0 is benign, 1 is malignant."""
        mapping = {0: cls.BENIGN, 1: cls.MALIGNANT}
        if not isinstance(value, Integral) or isinstance(value, bool) or int(value) not in mapping:
            raise ValueError(f"classifier label must be 0 (benign) or 1 (malignant), got {value!r}")
        return mapping[int(value)]
