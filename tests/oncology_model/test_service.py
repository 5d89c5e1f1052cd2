"""The web service: probes, predictions, validation errors, body limits, OpenAPI, start-up failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oncology_model.bundle import MODEL_FILE, ModelMetadata
from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Tumor
from oncology_model.errors import BundleError
from oncology_model.service import ServiceSettings, create_app

SMALL_LIMIT = 2048


@pytest.fixture(scope="module")
def client(model_bundle_dir: Path) -> Iterator[TestClient]:
    """The service on the session bundle, started (lifespan run) once for the module."""
    with TestClient(create_app(ServiceSettings(model_dir=model_bundle_dir))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def small_client(model_bundle_dir: Path) -> Iterator[TestClient]:
    """The service with a small body limit and batch limit."""
    settings = ServiceSettings(model_dir=model_bundle_dir, max_body_bytes=SMALL_LIMIT, max_batch=3)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _tumor(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE_BENIGN, **changes}


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in EXAMPLE_BENIGN.items() if k != field}


# --- start-up ----------------------------------------------------------------------------------------------------


def test_create_app_builds_the_routes(model_bundle_dir: Path) -> None:
    app = create_app(ServiceSettings(model_dir=model_bundle_dir))
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/healthz", "/readyz", "/v1/model", "/v1/predictions", "/v1/predictions/batch"} <= paths


def test_start_up_with_a_missing_bundle_fails(tmp_path: Path) -> None:
    app = create_app(ServiceSettings(model_dir=tmp_path / "absent"))
    with pytest.raises(BundleError, match="no model bundle at"), TestClient(app):
        pass  # pragma: no cover - start-up must fail


def test_start_up_with_a_tampered_bundle_fails(bundle_copy: Path) -> None:
    with (bundle_copy / MODEL_FILE).open("ab") as f:
        f.write(b"tampered")
    app = create_app(ServiceSettings(model_dir=bundle_copy))
    with pytest.raises(BundleError, match="sha256"), TestClient(app):
        pass  # pragma: no cover - start-up must fail


def test_not_ready_before_the_model_is_loaded(model_bundle_dir: Path) -> None:
    app = create_app(ServiceSettings(model_dir=model_bundle_dir))
    response = TestClient(app).get("/readyz")  # no `with`: the lifespan has not run
    assert response.status_code == 503
    assert response.json() == {"message": "model not loaded", "detail": []}


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, model_bundle_dir: Path) -> None:
    monkeypatch.setenv("ONCOLOGY_MODEL_DIR", str(model_bundle_dir))
    monkeypatch.setenv("ONCOLOGY_MAX_BATCH", "7")
    settings = ServiceSettings()  # type: ignore[call-arg]
    assert settings.model_dir == model_bundle_dir
    assert settings.max_batch == 7
    assert settings.max_body_bytes == 1_000_000
    with TestClient(create_app()) as test_client:
        assert test_client.get("/readyz").json()["status"] == "ready"


def test_access_log_is_off_unless_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ONCOLOGY_ACCESS_LOG", raising=False)
    assert ServiceSettings(model_dir=tmp_path).access_log is False
    monkeypatch.setenv("ONCOLOGY_ACCESS_LOG", "")
    assert ServiceSettings(model_dir=tmp_path).access_log is False
    monkeypatch.setenv("ONCOLOGY_ACCESS_LOG", "true")
    assert ServiceSettings(model_dir=tmp_path).access_log is True


def test_start_up_freezes_the_heap_it_made(model_bundle_dir: Path) -> None:
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(ServiceSettings(model_dir=model_bundle_dir))):
        assert gc.get_freeze_count() > 10_000


@pytest.mark.parametrize(("field", "value"), [("max_batch", 0), ("max_body_bytes", 1023)])
def test_settings_refuse_unsafe_limits(tmp_path: Path, field: str, value: int) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        ServiceSettings.model_validate({"model_dir": tmp_path, field: value})


# --- probes and model information --------------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_names_the_model_version(client: TestClient, model_metadata: ModelMetadata) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model_version": model_metadata.model_version}


def test_model_returns_metadata_and_metrics(client: TestClient, model_metadata: ModelMetadata) -> None:
    response = client.get("/v1/model")
    assert response.status_code == 200
    body = response.json()
    assert ModelMetadata.model_validate(body) == model_metadata
    assert body["model_version"] == model_metadata.model_version
    assert body["evaluation"]["metrics"]["recall"]["value"] == model_metadata.evaluation.value("recall")
    assert set(body["evaluation"]["metrics"]) >= {"accuracy", "recall", "specificity", "roc_auc"}
    assert body["config"]["decision_threshold"] == body["threshold"]["threshold"] < 0.5
    assert body["features"] == list(FEATURES)


# --- predictions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scores", "expected"), [(EXAMPLE_BENIGN, "benign"), (EXAMPLE_MALIGNANT, "malignant")])
def test_predict_one(client: TestClient, model_metadata: ModelMetadata, scores: dict[str, int], expected: str) -> None:
    response = client.post("/v1/predictions", json=scores)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"prediction", "probability_malignant", "model_version"}
    assert body["prediction"] == expected
    assert 0.0 <= body["probability_malignant"] <= 1.0
    assert body["model_version"] == model_metadata.model_version


def test_predict_equals_the_classifier(client: TestClient, session_classifier: Classifier) -> None:
    response = client.post("/v1/predictions", json=EXAMPLE_MALIGNANT)
    prediction, probability = session_classifier.predict(Tumor(**EXAMPLE_MALIGNANT))
    assert response.json()["prediction"] == prediction.value
    assert response.json()["probability_malignant"] == pytest.approx(probability, abs=1e-12)


def test_predict_accepts_a_float_without_fraction(client: TestClient) -> None:
    response = client.post("/v1/predictions", json=_tumor(clump_thickness=5.0))
    assert response.status_code == 200
    assert response.json()["prediction"] == "benign"


def test_batch_keeps_the_order(
    client: TestClient, session_classifier: Classifier, model_metadata: ModelMetadata
) -> None:
    order = [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, EXAMPLE_MALIGNANT, EXAMPLE_BENIGN, _tumor(clump_thickness=9)]
    response = client.post("/v1/predictions/batch", json={"tumors": order})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["prediction"] for p in predictions] == ["benign", "malignant", "malignant", "benign", "benign"]
    expected = session_classifier.predict_many([Tumor(**t) for t in order])
    assert [p["probability_malignant"] for p in predictions] == pytest.approx([p for _, p in expected], abs=1e-12)
    assert {p["model_version"] for p in predictions} == {model_metadata.model_version}


def test_batch_of_1000_is_accepted(client: TestClient) -> None:
    tumors = [EXAMPLE_BENIGN if i % 2 else EXAMPLE_MALIGNANT for i in range(1000)]
    response = client.post("/v1/predictions/batch", json={"tumors": tumors})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 1000
    assert [p["prediction"] for p in predictions[:4]] == ["malignant", "benign", "malignant", "benign"]


def test_batch_of_1001_is_refused_with_413(client: TestClient) -> None:
    response = client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN] * 1001})
    assert response.status_code == 413
    message = response.json()["message"]
    assert message.startswith("tumors: ")
    assert "1001" in message
    assert "limit of 1000" in message


def test_batch_limit_follows_the_settings(small_client: TestClient) -> None:
    assert small_client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN] * 3}).status_code == 200
    response = small_client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN] * 4})
    assert response.status_code == 413
    assert "tumors: 4 items, more than the limit of 3" in response.json()["message"]


def test_empty_batch_is_refused(client: TestClient) -> None:
    response = client.post("/v1/predictions/batch", json={"tumors": []})
    assert response.status_code == 422
    assert response.json()["message"].startswith("tumors: List should have at least 1 item")


# --- validation errors -------------------------------------------------------------------------------------------

BAD_TUMORS = [
    pytest.param(_tumor(clump_thickness=11), "clump_thickness", "less than or equal to 10", id="above-range"),
    pytest.param(_tumor(mitoses=0), "mitoses", "greater than or equal to 1", id="below-range"),
    pytest.param(_tumor(bare_nuclei=True), "bare_nuclei", "must be an integer, not a boolean", id="boolean"),
    pytest.param(_tumor(bare_nuclei="5"), "bare_nuclei", "must be a JSON number, not a string", id="string"),
    pytest.param(_tumor(marginal_adhesion=2.5), "marginal_adhesion", "fractional part", id="float-with-fraction"),
    pytest.param(_tumor(marginal_adhesion=None), "marginal_adhesion", "valid integer", id="null"),
    pytest.param(_without("bland_chromatin"), "bland_chromatin", "Field required", id="missing-field"),
    pytest.param(_tumor(patient="x"), "patient", "Extra inputs are not permitted", id="extra-field"),
]


@pytest.mark.parametrize(("payload", "field", "rule"), BAD_TUMORS)
def test_invalid_tumor_is_422_naming_field_and_rule(
    client: TestClient, payload: dict[str, Any], field: str, rule: str
) -> None:
    response = client.post("/v1/predictions", json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["message"].startswith(f"{field}: ")
    assert rule in body["message"]
    assert body["detail"][0]["loc"] == ["body", field]
    assert "input" not in body["detail"][0]


@pytest.mark.parametrize(("payload", "field", "rule"), BAD_TUMORS)
def test_invalid_tumor_in_a_batch_is_422_naming_its_position(
    client: TestClient, payload: dict[str, Any], field: str, rule: str
) -> None:
    response = client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN, payload]})
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith(f"tumors.1.{field}: ")
    assert rule in message


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        pytest.param(b'{"clump_thickness": 5,', "JSON", id="truncated"),
        pytest.param(b"{'clump_thickness': 5}", "JSON", id="single-quotes"),
        pytest.param(b"not json at all", "JSON", id="text"),
    ],
)
def test_malformed_json_is_422_naming_the_body(client: TestClient, content: bytes, rule: str) -> None:
    response = client.post("/v1/predictions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    message = response.json()["message"]
    assert rule in message
    assert message.startswith("body"), message


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        pytest.param(b"[1, 2]", "valid dictionary", id="a-list"),
        pytest.param(b"", "Field required", id="empty"),
    ],
)
def test_wrong_body_shape_is_422_naming_the_body(client: TestClient, content: bytes, rule: str) -> None:
    response = client.post("/v1/predictions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("body: ")
    assert rule in message


def test_several_errors_are_all_named(client: TestClient) -> None:
    response = client.post("/v1/predictions", json=_tumor(clump_thickness=0, mitoses=True))
    assert response.status_code == 422
    message = response.json()["message"]
    assert "clump_thickness: " in message
    assert "mitoses: " in message


# --- body limit --------------------------------------------------------------------------------------------------


def test_body_over_the_limit_with_content_length_is_413(small_client: TestClient) -> None:
    body = json.dumps(EXAMPLE_BENIGN).encode().ljust(SMALL_LIMIT + 1)
    response = small_client.post("/v1/predictions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["message"] == f"request body: larger than the limit of {SMALL_LIMIT} bytes"


def test_body_at_the_limit_is_accepted(small_client: TestClient) -> None:
    body = json.dumps(EXAMPLE_BENIGN).encode().ljust(SMALL_LIMIT)  # JSON with trailing spaces
    response = small_client.post("/v1/predictions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["prediction"] == "benign"


def test_chunked_body_over_the_limit_without_content_length_is_413(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield json.dumps(EXAMPLE_BENIGN).encode()
        for _ in range(10):
            yield b" " * 500

    response = small_client.post("/v1/predictions", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["message"] == f"request body: larger than the limit of {SMALL_LIMIT} bytes"


def test_chunked_body_under_the_limit_is_accepted(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield json.dumps(EXAMPLE_MALIGNANT).encode()
        yield b" " * 100

    response = small_client.post("/v1/predictions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["prediction"] == "malignant"


# --- documentation -----------------------------------------------------------------------------------------------


def test_openapi_documents_the_paths_and_the_tumor_schema(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert "post" in spec["paths"]["/v1/predictions"]
    assert "post" in spec["paths"]["/v1/predictions/batch"]
    assert "get" in spec["paths"]["/v1/model"]
    tumor = spec["components"]["schemas"]["Tumor"]
    assert tumor["examples"] == [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT]
    assert sorted(tumor["required"]) == sorted(FEATURES)
    score = tumor["properties"]["clump_thickness"]
    assert (score.get("minimum"), score.get("maximum")) == (1, 10), f"not JSON Schema keywords: {score}"
    assert "examples" in spec["components"]["schemas"]["PredictionOut"]
    assert "422" in spec["paths"]["/v1/predictions"]["post"]["responses"]


def test_docs_serve_html(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text.lower()


# --- one error shape: every 4xx is a Problem, whoever answers it -------------------------------------------------


def _problem(response: Any, status: int) -> dict[str, Any]:
    """Assert the response is `status` with a `Problem` body (JSON, `message` and `detail` only); the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"message", "detail"}
    assert isinstance(body["message"], str)
    assert isinstance(body["detail"], list)
    return body


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/predictions/batch"])
def test_malformed_json_is_a_problem_naming_the_body(client: TestClient, path: str) -> None:
    response = client.post(path, content=b'{"tumors": [', headers={"content-type": "application/json"})
    body = _problem(response, 422)
    assert body["message"].startswith("body: JSON decode error")
    assert body["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"[" * 100_000, id="100k-arrays"),
        pytest.param(b'{"a":' * 100_000, id="100k-objects"),
        pytest.param(
            b'{"tumors": [' + json.dumps(EXAMPLE_BENIGN).encode() + b'], "note": ' + b"[" * 100_000, id="in-a-batch"
        ),
    ],
)
@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/predictions/batch"])
def test_deeply_nested_json_is_400_not_a_crash(client: TestClient, path: str, content: bytes) -> None:
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    body = _problem(response, 400)
    assert body["message"] == "body: JSON nested too deeply"
    assert body["detail"] == [{"type": "json_unreadable", "loc": ["body"], "msg": "JSON nested too deeply"}]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b'{"clump_thickness": "\xff"}', "not UTF-8", id="not-utf8-value"),
        pytest.param(json.dumps(EXAMPLE_BENIGN).encode()[:-1] + b', "\x80": 1}', "not UTF-8", id="not-utf8-key"),
        pytest.param(b'{"mitoses": 1' + b"0" * 5000 + b"}", "a number with too many digits", id="long-number"),
    ],
)
def test_a_body_that_cannot_be_read_is_400_naming_why(client: TestClient, content: bytes, reason: str) -> None:
    response = client.post("/v1/predictions", content=content, headers={"content-type": "application/json"})
    assert _problem(response, 400)["message"] == f"body: {reason}"


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/predictions/batch"])
@pytest.mark.parametrize(
    ("headers", "declared"),
    [
        pytest.param({"content-type": "text/plain"}, "'text/plain' is not accepted", id="text-plain"),
        pytest.param({"content-type": "text/json"}, "'text/json' is not accepted", id="text-json"),
        pytest.param(
            {"content-type": "application/x-www-form-urlencoded"},
            "'application/x-www-form-urlencoded' is not accepted",
            id="form",
        ),
        pytest.param({}, "missing", id="no-content-type"),
    ],
)
def test_a_body_not_declared_json_is_415(client: TestClient, path: str, headers: dict[str, str], declared: str) -> None:
    payload = EXAMPLE_BENIGN if path == "/v1/predictions" else {"tumors": [EXAMPLE_BENIGN]}
    response = client.post(path, content=json.dumps(payload).encode(), headers=headers)
    body = _problem(response, 415)
    assert body["message"] == f"content-type: {declared}; send the body as application/json"
    assert body["detail"][0]["loc"] == ["header", "content-type"]
    assert body["detail"][0]["type"] == "unsupported_media_type"


def test_form_fields_and_files_are_415(client: TestClient) -> None:
    assert _problem(client.post("/v1/predictions", data={"clump_thickness": "5"}), 415)["message"].startswith(
        "content-type: 'application/x-www-form-urlencoded'"
    )
    assert _problem(client.post("/v1/predictions", files={"tumor": ("t.json", b"{}")}), 415)["message"].startswith(
        "content-type: 'multipart/form-data; boundary="
    )


def test_without_content_type_or_body_the_missing_body_is_named(client: TestClient) -> None:
    """No `Content-Type` and no body: nothing is in an unsupported media type; the body is missing (422).

    FastAPI (0.1xx, `strict_content_type`) never reads a body without `Content-Type` as JSON, which would let a
    browser post cross-site without a preflight; so a body without it is 415 (above), and no body at all is 422.
    """
    response = client.post("/v1/predictions")
    assert "content-type" not in response.request.headers
    assert _problem(response, 422)["message"] == "body: Field required"


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;x=1"]
)
def test_json_with_parameters_or_in_capitals_is_accepted(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/v1/predictions", content=json.dumps(EXAMPLE_MALIGNANT), headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "malignant"


def test_an_unknown_path_is_a_404_problem(client: TestClient) -> None:
    body = _problem(client.get("/v1/prediction"), 404)
    assert body == {"message": "GET /v1/prediction: no such path", "detail": []}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/predictions", "POST"),
        ("DELETE", "/v1/predictions/batch", "POST"),
        ("POST", "/healthz", "GET"),
    ],
)
def test_an_unknown_method_is_a_405_problem_with_allow(
    client: TestClient, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path, json=EXAMPLE_BENIGN)
    body = _problem(response, 405)
    assert response.headers["allow"] == allowed
    assert body["message"] == f"{method} {path}: method not allowed (allowed: {allowed})"


def test_the_error_answers_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path in ("/v1/predictions", "/v1/predictions/batch"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {status: responses[status]["content"] for status in ("400", "413", "415", "422")} == dict.fromkeys(
            ("400", "413", "415", "422"), problem
        )
    assert spec["paths"]["/readyz"]["get"]["responses"]["200"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
    }


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/predictions/batch", "/healthz"])
def test_a_body_over_the_limit_is_a_413_problem_from_the_fast_path(small_client: TestClient, path: str) -> None:
    response = small_client.post(path, content=b" " * (SMALL_LIMIT + 1), headers={"content-type": "application/json"})
    body = _problem(response, 413)
    assert body == {"message": f"request body: larger than the limit of {SMALL_LIMIT} bytes", "detail": []}
