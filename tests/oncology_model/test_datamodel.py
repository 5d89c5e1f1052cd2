"""The request data model: Tumor's validation rules and Prediction's conversions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Prediction, Tumor


def _tumor(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE_BENIGN, **changes}


@pytest.mark.parametrize("field", FEATURES)
@pytest.mark.parametrize("value", [1, 5, 10])
def test_tumor_accepts_integer_scores_1_to_10(field: str, value: int) -> None:
    tumor = Tumor(**_tumor(**{field: value}))
    assert getattr(tumor, field) == value
    assert isinstance(getattr(tumor, field), int)


def test_tumor_accepts_a_float_without_fraction_as_an_integer() -> None:
    tumor = Tumor(**_tumor(clump_thickness=5.0))
    assert tumor.clump_thickness == 5
    assert type(tumor.clump_thickness) is int


def test_tumor_as_row_is_in_feature_order() -> None:
    tumor = Tumor(**EXAMPLE_MALIGNANT)
    assert tumor.as_row() == tuple(EXAMPLE_MALIGNANT[name] for name in FEATURES)
    assert tumor.as_row() == (8, 10, 10, 8, 7, 10, 9, 7, 1)


def test_tumor_is_frozen() -> None:
    tumor = Tumor(**EXAMPLE_BENIGN)
    with pytest.raises(ValidationError, match="frozen"):
        tumor.mitoses = 2


@pytest.mark.parametrize(
    ("value", "error_type", "rule"),
    [
        pytest.param(True, "value_error", "not a boolean", id="true"),
        pytest.param(False, "value_error", "not a boolean", id="false"),
        pytest.param(5.5, "int_from_float", "fractional part", id="float-with-fraction"),
        pytest.param("5", "value_error", "not a string", id="string"),
        pytest.param(0, "greater_than_equal", "greater than or equal to 1", id="zero"),
        pytest.param(-3, "greater_than_equal", "greater than or equal to 1", id="negative"),
        pytest.param(11, "less_than_equal", "less than or equal to 10", id="eleven"),
        pytest.param(None, "int_type", "valid integer", id="null"),
        pytest.param([5], "int_type", "valid integer", id="list"),
    ],
)
@pytest.mark.parametrize("field", ["clump_thickness", "bare_nuclei", "mitoses"])
def test_tumor_refuses_bad_scores_naming_field_and_rule(field: str, value: object, error_type: str, rule: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Tumor(**_tumor(**{field: value}))
    errors = caught.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == (field,)
    assert errors[0]["type"] == error_type
    assert rule in errors[0]["msg"]
    assert field in str(caught.value)


@pytest.mark.parametrize("field", FEATURES)
def test_tumor_refuses_a_missing_field(field: str) -> None:
    data = dict(EXAMPLE_BENIGN)
    del data[field]
    with pytest.raises(ValidationError) as caught:
        Tumor(**data)
    errors = caught.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [((field,), "missing")]
    assert "Field required" in errors[0]["msg"]


def test_tumor_refuses_an_extra_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Tumor(**_tumor(patient_name="x"))
    errors = caught.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [(("patient_name",), "extra_forbidden")]
    assert "Extra inputs are not permitted" in errors[0]["msg"]


def test_tumor_reports_every_bad_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Tumor(**_tumor(clump_thickness=0, mitoses=11))
    assert sorted(e["loc"][0] for e in caught.value.errors()) == ["clump_thickness", "mitoses"]


def test_tumor_schema_carries_examples() -> None:
    schema = Tumor.model_json_schema()
    assert schema["examples"] == [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(FEATURES)
    mitoses = schema["properties"]["mitoses"]
    assert (mitoses.get("minimum"), mitoses.get("maximum")) == (1, 10), f"not JSON Schema keywords: {mitoses}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2, Prediction.BENIGN), (4, Prediction.MALIGNANT), (np.int64(4), Prediction.MALIGNANT)],
)
def test_prediction_from_class(value: object, expected: Prediction) -> None:
    assert Prediction.from_class(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, Prediction.BENIGN), (1, Prediction.MALIGNANT), (np.int64(1), Prediction.MALIGNANT)],
)
def test_prediction_from_classifier(value: object, expected: Prediction) -> None:
    assert Prediction.from_classifier(value) is expected


@pytest.mark.parametrize("value", [3, 0, 1, True, False, "4", "2", None, [4], {"class": 4}])
def test_prediction_from_class_refuses_with_value_error_naming_the_value(value: object) -> None:
    with pytest.raises(ValueError, match="class must be 2 \\(benign\\) or 4 \\(malignant\\)") as caught:
        Prediction.from_class(value)
    assert str(caught.value).endswith(f"got {value!r}")


@pytest.mark.parametrize("value", [2, -1, True, False, "1", "0", None, [1]])
def test_prediction_from_classifier_refuses_with_value_error_naming_the_value(value: object) -> None:
    with pytest.raises(ValueError, match="classifier label must be 0 \\(benign\\) or 1 \\(malignant\\)") as caught:
        Prediction.from_classifier(value)
    assert str(caught.value).endswith(f"got {value!r}")


def test_prediction_values_are_the_api_strings() -> None:
    assert [p.value for p in Prediction] == ["benign", "malignant"]
