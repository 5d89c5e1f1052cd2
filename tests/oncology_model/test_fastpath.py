"""The fast path in front of FastAPI: it accepts only what FastAPI accepts, answers what FastAPI would, and hands
everything else on, so the contract (422 and 413 bodies, OpenAPI) stays FastAPI's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import State

from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, FEATURES, Tumor
from oncology_model.fastpath import PREDICT, PREDICT_BATCH, BatchScores, Front, Message, Scope, TumorScores
from oncology_model.metrics import ServiceMetrics
from oncology_model.service import Service, ServiceSettings, create_app
from tests.support.examples import examples

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def app(model_bundle_dir: Path) -> Iterator[Service]:
    """The service, started once for the module."""
    service = create_app(ServiceSettings(model_dir=model_bundle_dir))
    with TestClient(service):
        yield service


@pytest.fixture(scope="module")
def client(app: Service) -> TestClient:
    """The service as clients see it: the fast path first."""
    return TestClient(app)


@pytest.fixture(scope="module")
def reference(app: Service) -> TestClient:
    """The same service with the fast path left out: FastAPI alone, the reference of the contract."""
    return TestClient(app.front.app)


def _same_answer(client: TestClient, reference: TestClient, path: str, content: bytes, headers: dict[str, str]) -> int:
    """Post to both; assert the same status, content type and body; the status."""
    got = client.post(path, content=content, headers=headers)
    expected = reference.post(path, content=content, headers=headers)
    assert got.status_code == expected.status_code, (content, got.text, expected.text)
    assert got.headers["content-type"] == expected.headers["content-type"]
    assert got.json() == expected.json()
    status: int = got.status_code
    return status


# --- the decoder mirrors the Tumor model -------------------------------------------------------------------------


def test_tumor_scores_has_the_tumor_fields_in_feature_order() -> None:
    assert TumorScores.__struct_fields__ == FEATURES == tuple(Tumor.model_fields)


def test_tumor_scores_bounds_are_the_tumor_bounds() -> None:
    schema = Tumor.model_json_schema()["properties"]
    for name in FEATURES:
        low, high = schema[name]["minimum"], schema[name]["maximum"]
        for value, accepted in ((low - 1, False), (low, True), (high, True), (high + 1, False)):
            body = json.dumps({**EXAMPLE_BENIGN, name: value}).encode()
            try:
                msgspec.json.decode(body, type=TumorScores)
            except msgspec.ValidationError:
                assert not accepted, (name, value)
            else:
                assert accepted, (name, value)


SCORES: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-2, max_value=12),
    st.sampled_from([5.0, 10.0, 2.5, -0.0, 1e1, True, False, None, "5", "", [], {}]),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def tumor_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Tumors, mostly invalid: wrong types and ranges, a missing field, an extra field."""
    payload = {name: draw(SCORES) for name in FEATURES}
    if draw(st.booleans()):
        payload.pop(draw(st.sampled_from(FEATURES)))
    if draw(st.integers(0, 4)) == 0:
        payload[draw(st.sampled_from(["patient", "Mitoses", "clump_thickness "]))] = 1
    return payload


@pytest.mark.property
@settings(max_examples=examples(300), deadline=None)
@given(tumor_payloads())
def test_what_the_decoder_accepts_the_tumor_model_accepts_with_the_same_scores(payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    try:
        scores = msgspec.json.decode(body, type=TumorScores)
    except msgspec.ValidationError:
        return  # refused: FastAPI judges it
    assert Tumor.model_validate(json.loads(body)).as_row() == msgspec.structs.astuple(scores)


def test_valid_tumors_are_decoded() -> None:
    for example in (EXAMPLE_BENIGN, EXAMPLE_MALIGNANT):
        scores = msgspec.json.decode(json.dumps(example).encode(), type=TumorScores)
        assert msgspec.structs.astuple(scores) == Tumor(**example).as_row()
    batch = msgspec.json.decode(json.dumps({"tumors": [EXAMPLE_BENIGN], "note": "x"}).encode(), type=BatchScores)
    assert len(batch.tumors) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"tumors": []}', id="empty-batch"),
        pytest.param(b'{"tumor": [{}]}', id="misnamed"),
        pytest.param(b"[]", id="a-list"),
    ],
)
def test_the_batch_decoder_refuses(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=BatchScores)


# --- the service answers as FastAPI alone does -------------------------------------------------------------------


@pytest.mark.property
@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=tumor_payloads())
def test_any_tumor_gets_the_answer_fastapi_gives(
    client: TestClient, reference: TestClient, payload: dict[str, Any]
) -> None:
    content = json.dumps(payload).encode()
    _same_answer(client, reference, PREDICT, content, JSON)
    batch = json.dumps({"tumors": [EXAMPLE_MALIGNANT, payload]}).encode()
    _same_answer(client, reference, PREDICT_BATCH, batch, JSON)


def _raw(text: str) -> bytes:
    return text.encode()


BENIGN = json.dumps(EXAMPLE_BENIGN)
RAW_BODIES = [
    pytest.param(_raw(BENIGN), 200, id="valid"),
    pytest.param(_raw(BENIGN.replace('"mitoses": 1', '"mitoses": 9, "mitoses": 1')), 200, id="duplicate-key-last-wins"),
    pytest.param(_raw(BENIGN.replace('"mitoses": 1', '"mitoses": 1, "mitoses": 11')), 422, id="duplicate-key-invalid"),
    pytest.param(_raw(BENIGN.replace('"mitoses": 1', '"mitoses": 1e0')), 200, id="exponent"),
    pytest.param(_raw(BENIGN.replace('"mitoses": 1', '"mitoses": NaN')), 422, id="nan-literal"),
    pytest.param(_raw(BENIGN.replace('"mitoses"', '"mit\\u006fses"')), 200, id="escaped-key"),
    pytest.param(_raw(f"\n  {BENIGN}  \n"), 200, id="whitespace"),
    pytest.param(b"\xef\xbb\xbf" + _raw(BENIGN), 200, id="utf8-bom"),
    pytest.param(_raw(BENIGN + "x"), 422, id="trailing-garbage"),
    pytest.param(_raw(BENIGN + BENIGN), 422, id="two-documents"),
    pytest.param(b"", 422, id="empty"),
    pytest.param(b'{"clump_thickness": "\xff"}', 400, id="not-utf8"),
    pytest.param(b"\xff\xfe", 422, id="utf16-bom-only"),
]


@pytest.mark.parametrize(("content", "status"), RAW_BODIES)
def test_raw_bodies_get_the_answer_fastapi_gives(
    client: TestClient, reference: TestClient, content: bytes, status: int
) -> None:
    assert _same_answer(client, reference, PREDICT, content, JSON) == status


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/json;charset=utf-8", "application/vnd.api+json", "text/plain"],
)
def test_other_content_types_get_the_answer_fastapi_gives(
    client: TestClient, reference: TestClient, content_type: str
) -> None:
    _same_answer(client, reference, PREDICT, _raw(BENIGN), {"content-type": content_type})


def test_a_batch_over_the_limit_gets_the_answer_fastapi_gives(client: TestClient, reference: TestClient) -> None:
    body = json.dumps({"tumors": [EXAMPLE_BENIGN] * 1001}).encode()
    assert _same_answer(client, reference, PREDICT_BATCH, body, JSON) == 413


# --- what the fast path does itself ------------------------------------------------------------------------------


class _Next:
    """The app behind `Front` in these tests: answers 418, and keeps the bodies it was handed."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.bodies.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _front(classifier: Classifier | None, max_body: int = 4096) -> tuple[Front, _Next, ServiceMetrics]:
    after = _Next()
    metrics = ServiceMetrics()
    state = State({"classifier": classifier})
    return Front(after, state, metrics, frozenset({PREDICT, PREDICT_BATCH}), max_body, max_batch=3), after, metrics


def test_valid_predictions_are_answered_before_fastapi(session_classifier: Classifier) -> None:
    front, after, _ = _front(session_classifier)
    client = TestClient(front)
    one = client.post(PREDICT, json=EXAMPLE_MALIGNANT)
    assert one.status_code == 200
    prediction, probability = session_classifier.predict(Tumor(**EXAMPLE_MALIGNANT))
    assert one.json() == {
        "prediction": prediction.value,
        "probability_malignant": probability,
        "model_version": session_classifier.version,
    }
    batch = client.post(PREDICT_BATCH, json={"tumors": [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT]})
    assert [p["prediction"] for p in batch.json()["predictions"]] == ["benign", "malignant"]
    assert after.bodies == []


@pytest.mark.parametrize(
    ("method", "path", "content", "headers"),
    [
        pytest.param("POST", PREDICT, _raw(BENIGN.replace("1}", "1.0}")), JSON, id="float-score"),
        pytest.param("POST", PREDICT, _raw(BENIGN), {"content-type": "text/plain"}, id="other-content-type"),
        pytest.param("PUT", PREDICT, _raw(BENIGN), JSON, id="other-method"),
        pytest.param("POST", "/v1/model", _raw(BENIGN), JSON, id="other-route"),
        pytest.param("POST", PREDICT_BATCH, _raw(json.dumps({"tumors": [EXAMPLE_BENIGN] * 4})), JSON, id="over-batch"),
    ],
)
def test_anything_else_is_handed_on_with_its_body(
    session_classifier: Classifier, method: str, path: str, content: bytes, headers: dict[str, str]
) -> None:
    front, after, _ = _front(session_classifier)
    assert TestClient(front).request(method, path, content=content, headers=headers).status_code == 418
    assert after.bodies == [content]


def test_before_the_model_is_loaded_everything_is_handed_on() -> None:
    front, after, _ = _front(None)
    assert TestClient(front).post(PREDICT, content=_raw(BENIGN), headers=JSON).status_code == 418
    assert after.bodies == [_raw(BENIGN)]


def test_a_body_in_chunks_is_joined(session_classifier: Classifier) -> None:
    front, _, _ = _front(session_classifier)
    body = _raw(BENIGN)
    response = TestClient(front).post(PREDICT, content=iter([body[:10], body[10:30], body[30:]]), headers=JSON)
    assert response.status_code == 200
    assert response.json()["prediction"] == "benign"


def _call(front: Front, messages: list[Message]) -> list[Message]:
    """Drive `front` with the given request messages; the messages it sent."""
    sent: list[Message] = []
    incoming = iter(messages)

    async def receive() -> Message:
        return next(incoming)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": PREDICT, "headers": [(b"content-type", b"application/json")]}
    asyncio.run(front(scope, receive, send))
    return sent


def test_a_client_that_leaves_during_the_body_gets_nothing_and_is_not_counted(session_classifier: Classifier) -> None:
    front, after, metrics = _front(session_classifier)
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"clump', "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert _call(front, messages) == []
    assert after.bodies == []
    assert b'route="/v1/predictions"' not in metrics.exposition()


def test_a_body_over_the_limit_in_chunks_is_413_without_reading_on(session_classifier: Classifier) -> None:
    front, after, _ = _front(session_classifier, max_body=1024)
    chunk = {"type": "http.request", "body": b" " * 600, "more_body": True}
    sent = _call(front, [chunk, chunk])  # a third receive() would fail: the iterator is exhausted
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {"message": "request body: larger than the limit of 1024 bytes", "detail": []}
    assert after.bodies == []


def test_an_error_in_the_fast_path_is_raised_and_counted_as_500(session_classifier: Classifier) -> None:
    class Broken(Classifier):
        def probability(self, row: Any) -> float:
            raise RuntimeError("broken model")

    front, _, metrics = _front(Broken(session_classifier.pipeline, session_classifier.metadata))
    with pytest.raises(RuntimeError, match="broken model"):
        TestClient(front).post(PREDICT, json=EXAMPLE_BENIGN)
    assert b'oncology_http_requests_total{method="POST",route="/v1/predictions",status="500"} 1.0' in (
        metrics.exposition()
    )


@pytest.mark.parametrize(
    ("path", "content", "headers", "status"),
    [
        pytest.param(PREDICT, _raw(BENIGN)[:-1] + b', "\x80": 1}', JSON, 400, id="key-not-utf8"),
        pytest.param(
            PREDICT_BATCH,
            b'{"tumors": [' + _raw(BENIGN) + b'], "note": ' + b"[" * 100_000,
            JSON,
            400,
            id="deep-ignored",
        ),
        pytest.param(PREDICT_BATCH, b'{"tumors": [' + _raw(BENIGN) + b'], "note": [[[1]]]}', JSON, 200, id="ignored"),
        pytest.param(PREDICT, _raw(BENIGN), {"content-type": "text/plain"}, 415, id="text-plain"),
        pytest.param(PREDICT, _raw(BENIGN), {}, 415, id="no-content-type"),
    ],
)
def test_what_msgspec_raises_outside_decode_error_gets_the_answer_fastapi_gives(
    client: TestClient, reference: TestClient, path: str, content: bytes, headers: dict[str, str], status: int
) -> None:
    """msgspec raises UnicodeDecodeError and RecursionError, not DecodeError, for some bodies; they are handed on."""
    assert _same_answer(client, reference, path, content, headers) == status
