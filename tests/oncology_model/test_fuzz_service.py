"""The service fuzzed from its own contract: schemathesis generates requests from the OpenAPI schema the app serves,
for every operation, and checks every answer against it; a second fuzzer mangles the bytes the JSON parser sees.

The promise checked on every response: no 5xx; the status code, media type and body are the documented ones; every
4xx is a `Problem` (`message` + `detail`), whoever answered it (the fast path, FastAPI's parser, validation, the
router); a body not declared JSON is 415. The requests go to the real ASGI app, fast path in front, with a real model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.python.asgi import shutdown_lifespans

from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT
from oncology_model.fastpath import PREDICT, PREDICT_BATCH, Receive, Scope, Send
from oncology_model.service import Service, ServiceSettings, create_app
from tests.support.examples import examples

#: Examples per operation in the fuzzing phase (positive and negative). The examples and coverage phases add their
#: own (schema examples, boundary values, wrong types, undeclared media types and methods): about 700 requests.
MAX_EXAMPLES = examples(200)
#: A fixed seed: the same requests on every run, so a failure in CI is reproduced by running the test again.
SEED = 20261125

# The contract as the app serves it, built when the module is imported, as `@schema.parametrize()` needs the operations
# at collection time (`schemathesis.pytest.from_fixture` would defer it, but 4.32 reads `Function._nodeid`, which
# pytest 9.2 no longer has). Building the app reads no model (the lifespan does); the served document is compared
# with this one below, so the fuzzing cannot drift from what clients see.
CONTRACT: dict[str, Any] = json.loads(json.dumps(create_app(ServiceSettings(model_dir=Path("unread"))).openapi()))
CONFIG = schemathesis.Config.from_dict(
    {"seed": SEED, "base-url": "http://testserver", "generation": {"max-examples": MAX_EXAMPLES, "database": "none"}}
)
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(CONTRACT)), config=CONFIG)


@pytest.fixture(scope="module")
def fuzzed_app(model_bundle_dir: Path) -> Iterator[Service]:
    """The service on the session bundle; schemathesis runs its lifespan (loads the model) on the first request."""
    yield create_app(ServiceSettings(model_dir=model_bundle_dir))
    shutdown_lifespans()


@pytest.fixture(scope="module")
def client(model_bundle_dir: Path) -> Iterator[TestClient]:
    """The service on the session bundle, started."""
    with TestClient(create_app(ServiceSettings(model_dir=model_bundle_dir))) as test_client:
        yield test_client


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _declares_json(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`: what the POST endpoints read."""
    media_type = _media_type(content_type)
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def assert_problem(status: int, content_type: str | None, body: bytes) -> dict[str, Any]:
    """Assert an error answer is the documented `Problem`: JSON with a non-empty `message` and a `detail` list."""
    assert _media_type(content_type) == "application/json", (status, content_type, body[:200])
    problem = json.loads(body)
    assert isinstance(problem, dict), (status, body[:200])
    assert set(problem) == {"message", "detail"}, (status, body[:200])
    assert isinstance(problem["message"], str), (status, body[:200])
    assert problem["message"], (status, body[:200])
    assert isinstance(problem["detail"], list), (status, body[:200])
    assert all(isinstance(item, dict) for item in problem["detail"]), (status, body[:200])
    return problem


def assert_promise(request: tuple[str, str, str | None, bytes], status: int, answer: tuple[str | None, bytes]) -> None:
    """What every answer keeps, beyond schemathesis' conformance checks: no 5xx, a `Problem` for every 4xx, and 415
    for a POST whose body is not declared JSON (unless the body is over the size limit: 413 is decided first).

    Args:
        request: method, path, `Content-Type` (None when absent) and body sent.
        status: the status answered.
        answer: `Content-Type` and body answered.
    """
    method, path, content_type, body = request
    assert status < 500, (method, path, status)
    if 400 <= status < 500:
        assert_problem(status, *answer)
    if method == "POST" and path in (PREDICT, PREDICT_BATCH) and body and not _declares_json(content_type):
        assert status in (413, 415), (content_type, body[:200], status)


def _sent_body(request: requests.PreparedRequest) -> bytes:
    body = request.body
    return body.encode() if isinstance(body, str) else (body or b"")


@schema.parametrize()
def test_every_operation_keeps_its_contract(case: schemathesis.Case[Any], fuzzed_app: Service) -> None:
    response = case.call_and_validate(app=fuzzed_app)  # schemathesis' checks: 5xx, status, media type, body, ...
    sent = response.request
    request = (str(sent.method), case.operation.path, sent.headers.get("content-type"), _sent_body(sent))
    answered_type = response.headers.get("content-type", [None])[0]
    assert_promise(request, response.status_code, (answered_type, response.content))


def test_the_fuzzed_contract_is_the_served_one(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    assert served == CONTRACT
    operations = {(method.upper(), path) for path, item in served["paths"].items() for method in item}
    assert operations == {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/v1/model"),
        ("POST", PREDICT),
        ("POST", PREDICT_BATCH),
    }
    labels = {result.ok().label for result in schema.get_all_operations() if isinstance(result, Ok)}
    assert labels == {f"{method} {path}" for method, path in operations}


def test_the_contract_documents_the_error_answers() -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    for path in (PREDICT, PREDICT_BATCH):
        responses = CONTRACT["paths"][path]["post"]["responses"]
        assert {"200", "400", "413", "415", "422"} <= set(responses), path
        for status in ("400", "413", "415", "422"):
            assert responses[status]["content"] == {"application/json": {"schema": problem}}, (path, status)
    assert set(CONTRACT["components"]["schemas"]["Problem"]["properties"]) == {"message", "detail"}


def test_metrics_are_text_and_outside_the_contract(client: TestClient) -> None:
    assert "/metrics" not in CONTRACT["paths"]  # operational, as test_metrics pins; answered as text all the same
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert _media_type(answer.headers["content-type"]) == "text/plain"
    refused = client.post("/metrics", content=b"{}", headers={"content-type": "application/json"})
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET"
    assert assert_problem(405, refused.headers["content-type"], refused.content)["message"].startswith("POST /metrics")


# --- the checks can fail ----------------------------------------------------------------------------------------


def _broken(status: int, content_type: bytes, body: bytes) -> Any:
    """An ASGI app answering every request with the given status, media type and body."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")  # refused before receiving: "no lifespan support" to ASGI servers
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body", "failure"),
    [
        pytest.param("/healthz", 500, b"application/json", b'{"message": "x", "detail": []}', "Server error", id="5xx"),
        pytest.param("/healthz", 418, b"application/json", b'{"message": "x", "detail": []}', "Undocumented", id="418"),
        pytest.param("/v1/model", 200, b"text/html", b"<p>model</p>", "Undocumented Content-Type", id="media-type"),
        pytest.param("/healthz", 200, b"application/json", b'{"status": 1}', "schema", id="body"),
        pytest.param("/readyz", 200, b"application/json", b'{"status": "up"}', "schema", id="readiness"),
    ],
)
def test_a_broken_answer_fails_the_conformance_checks(
    path: str, status: int, content_type: bytes, body: bytes, failure: str
) -> None:
    case = schema[path]["GET"].Case()
    with pytest.raises(FailureGroup) as failures:
        case.call_and_validate(app=_broken(status, content_type, body))
    assert failure.lower() in str(failures.value).lower()


def test_an_error_that_is_not_a_problem_fails_the_promise() -> None:
    problem = b'{"message": "x", "detail": []}'
    with pytest.raises(AssertionError):
        assert_problem(404, "application/json", b'{"detail": "Not Found"}')
    with pytest.raises(AssertionError):
        assert_problem(422, "text/plain", problem)
    with pytest.raises(AssertionError):
        assert_promise(("POST", PREDICT, "application/json", b"{}"), 422, ("application/json", b"{}"))
    with pytest.raises(AssertionError):
        assert_promise(("POST", PREDICT, "text/plain", b"{}"), 422, ("application/json", problem))
    with pytest.raises(AssertionError):
        assert_promise(("GET", "/healthz", None, b""), 503, ("application/json", problem))
    assert_promise(("POST", PREDICT, "text/plain", b"{}"), 415, ("application/json", problem))


# --- the parser's input, fuzzed ---------------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/problem+json",
        "application/jsonx",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/octet-stream",
        "*/*",
        "json",
        "",
        None,
    ]
)


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bodies near the valid ones: truncated, spliced with random bytes, nested deep (around the document or in a
    field of it), or left empty."""
    tumor = draw(st.sampled_from([EXAMPLE_BENIGN, EXAMPLE_MALIGNANT]))
    document: Any = draw(st.sampled_from([tumor, {"tumors": [tumor, tumor]}, [tumor], "x", 5, None]))
    text = json.dumps(document).encode()
    match draw(st.sampled_from(["truncate", "splice", "nest", "nest-inside", "empty", "bytes", "whole"])):
        case "truncate":
            return text[: draw(st.integers(0, len(text) - 1))]
        case "splice":
            at = draw(st.integers(0, len(text)))
            return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
        case "nest":
            depth = draw(st.sampled_from([1, 10, 500, 5_000, 100_000]))
            opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"tumors":', b"}"), (b'{"a":', b"}")]))
            return opener * depth + text + closer * draw(st.sampled_from([0, depth]))
        case "nest-inside":
            depth = draw(st.sampled_from([10, 500, 5_000, 100_000]))
            field = draw(st.sampled_from([b'"note"', b'"mitoses"', b'"tumors"']))
            return text.rstrip(b"}") + b", " + field + b": " + b"[" * depth + b"1" + b"]" * depth + b"}"
        case "empty":
            return draw(st.sampled_from([b"", b" ", b"\n", b"null", b"{}", b"[]"]))
        case "bytes":
            return draw(st.binary(max_size=64))
        case _:
            return text


@settings(max_examples=examples(300), deadline=None)
@given(path=st.sampled_from([PREDICT, PREDICT_BATCH]), body=raw_bodies(), content_type=CONTENT_TYPES)
def test_any_bytes_get_a_documented_answer(
    client: TestClient, path: str, body: bytes, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    answer = client.post(path, content=body, headers=headers)
    assert_promise(
        ("POST", path, content_type, body), answer.status_code, (answer.headers["content-type"], answer.content)
    )
    assert str(answer.status_code) in CONTRACT["paths"][path]["post"]["responses"], answer.status_code
    if answer.status_code == 200:
        assert _declares_json(content_type)
