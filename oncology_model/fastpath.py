"""The ASGI layer in front of the FastAPI app: body limit, metrics, and the prediction endpoints' fast path.

Every HTTP request passes here. A valid prediction request (POST, `application/json`, a body that msgspec decodes
and validates in one step) is answered here, without routing, dependency injection or response-model validation.
Everything else goes on to the FastAPI app with the body already read: invalid input, other content types, other
routes. FastAPI stays the reference of the contract (OpenAPI schema, 422 and 413 bodies); the fast path only
accepts what FastAPI accepts, and answers what FastAPI would.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Annotated, Any

import msgspec
import numpy as np
from starlette.datastructures import State

from oncology_model.classifier import Classifier
from oncology_model.datamodel import FEATURES, SCORE_MAX, SCORE_MIN, Prediction
from oncology_model.metrics import ServiceMetrics
from oncology_model.predictionlog import PredictionLog, request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREDICT = "/v1/predictions"
PREDICT_BATCH = "/v1/predictions/batch"
#: The metrics' route label of a path the service does not serve (keeps the label set bounded).
OTHER_ROUTE = "other"
#: Where the request id is kept in the ASGI scope, for the FastAPI routes (Front sets it on every HTTP request).
REQUEST_ID_KEY = "oncology.request_id"
REQUEST_ID_HEADER = b"x-request-id"
#: The statuses of a prediction request refused as invalid (unreadable body, invalid fields): logged as refusals.
REFUSED = frozenset({400, 422})
#: Content types answered here; any other goes to FastAPI, which decides.
JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"})

Score = Annotated[int, msgspec.Meta(ge=SCORE_MIN, le=SCORE_MAX)]
# The wire structs hold numbers and strings only, so they can never be part of a reference cycle: `gc=False` keeps
# them out of the garbage collector (a batch of 1,000 would otherwise set off several collections per request).


class TumorScores(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """`Tumor` for msgspec: JSON integers 1..10 only (no booleans, floats or strings), every field, no other.

    What it refuses, FastAPI judges: it also takes 5.0, and names the field and the rule when it refuses.
    """

    clump_thickness: Score
    uniformity_of_cell_size: Score
    uniformity_of_cell_shape: Score
    marginal_adhesion: Score
    single_epithelial_cell_size: Score
    bare_nuclei: Score
    bland_chromatin: Score
    normal_nucleoli: Score
    mitoses: Score


class BatchScores(msgspec.Struct, frozen=True, gc=False):
    """`BatchIn` for msgspec: at least one tumor; other fields are ignored, as FastAPI's model does."""

    tumors: Annotated[list[TumorScores], msgspec.Meta(min_length=1)]


class PredictionOut(msgspec.Struct, gc=False):
    """The wire form of one prediction (the same fields as the documented `PredictionOut`)."""

    prediction: Prediction
    probability_malignant: float
    model_version: str


class BatchOut(msgspec.Struct, gc=False):
    """The wire form of a batch answer."""

    predictions: list[PredictionOut]


_decode_one = msgspec.json.Decoder(TumorScores).decode
_decode_batch = msgspec.json.Decoder(BatchScores).decode
_encode = msgspec.json.Encoder().encode
_astuple = msgspec.structs.astuple
_chain = itertools.chain.from_iterable


def problem(message: str) -> bytes:
    """An error body in the documented `Problem` shape."""
    return _encode({"message": message, "detail": []})


class Front:
    """Body limit (413, with or without Content-Length), request metrics, request ids, and the prediction fast path.

    Every answer carries `X-Request-ID`: the client's when valid, else a new one. With a prediction log (`log`, set
    at start-up), every prediction answered, here or by FastAPI, is logged under that id.
    """

    log: PredictionLog | None = None

    def __init__(
        self, app: ASGIApp, state: State, metrics: ServiceMetrics, routes: frozenset[str], max_body: int, max_batch: int
    ) -> None:
        self.app = app
        self.state = state
        self.metrics = metrics
        self.routes = routes
        self.max_body = max_body
        self.max_batch = max_batch
        self._too_large = problem(f"request body: larger than the limit of {max_body} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        route = scope["path"] if scope["path"] in self.routes else OTHER_ROUTE
        status = 0
        try:
            status = await self._serve(scope, route, receive, send)
        except Exception:
            status = 500  # the server answers it (FastAPI's ServerErrorMiddleware for what was handed on)
            raise
        finally:
            if status:
                self.metrics.request(route, scope["method"], status, perf_counter() - start)
            if status in REFUSED and route in (PREDICT, PREDICT_BATCH) and self.log is not None:
                self.log.refuse(scope[REQUEST_ID_KEY], status)

    async def _serve(self, scope: Scope, route: str, receive: Receive, send: Send) -> int:
        """Answer the request or hand it on; the status sent, 0 when the client left first."""
        content_type = b""
        too_large = False
        given: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                too_large = value.isdigit() and int(value) > self.max_body
            elif name == b"content-type":
                content_type = value
            elif name == REQUEST_ID_HEADER:
                given = value
        rid = scope[REQUEST_ID_KEY] = request_id(given)
        if too_large:
            return await _answer(send, 413, self._too_large, rid)
        try:
            body = await self._body(receive)
        except _BodyTooLarge:
            return await _answer(send, 413, self._too_large, rid)
        if body is None:
            return 0
        if content_type in JSON_TYPES and scope["method"] == "POST":
            answer = self._predict(route, body, rid)
            if answer is not None:
                return await _answer(send, 200, answer, rid)
        return await self._hand_on(scope, body, receive, send, rid)

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body, up to the limit; None when the client went away."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _BodyTooLarge
            if not message.get("more_body", False):
                return chunk if not chunks else b"".join([*chunks, chunk])
            chunks.append(chunk)

    def _predict(self, route: str, body: bytes, rid: str) -> bytes | None:
        """The answer to a valid prediction request; None for anything FastAPI must judge."""
        model: Classifier | None = self.state.classifier
        if model is None or route not in (PREDICT, PREDICT_BATCH):
            return None
        try:
            if route == PREDICT:
                tumor = _decode_one(body)
                probability = model.probability(_astuple(tumor))
                label = model.label(probability)
                self.metrics.predicted(label)
                if self.log is not None:
                    self.log.add(rid, (tumor,), ((label, probability),), batch=False)
                return _encode(PredictionOut(label, probability, model.version))
            tumors = _decode_batch(body).tumors
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError too
            # msgspec does not wrap two errors in DecodeError: UnicodeDecodeError for an unknown key that is not UTF-8
            # (`forbid_unknown_fields` decodes it for its message; msgspec/msgspec#714), and RecursionError while it
            # skips a deeply nested field that `BatchScores` ignores. FastAPI answers both (400).
            return None
        if len(tumors) > self.max_batch:
            return None  # FastAPI answers 413, naming the count and the limit
        scores = np.fromiter(_chain(map(_astuple, tumors)), dtype=np.float64, count=len(tumors) * len(FEATURES))
        results = model.predict_rows(scores.reshape(len(tumors), len(FEATURES)))
        if self.log is not None:
            self.log.add(rid, tumors, results, batch=True)
        malignant = sum(label is Prediction.MALIGNANT for label, _ in results)
        self.metrics.predicted(Prediction.MALIGNANT, malignant)
        self.metrics.predicted(Prediction.BENIGN, len(results) - malignant)
        version = model.version
        return _encode(BatchOut([PredictionOut(label, p, version) for label, p in results]))

    async def _hand_on(self, scope: Scope, body: bytes, receive: Receive, send: Send, rid: str) -> int:
        """Let the FastAPI app answer, with the body already read and the request id added; the status it sent."""
        replayed = False
        status = 0

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid.encode())]
            await send(message)

        await self.app(scope, replay, noting_status)
        return status


class _BodyTooLarge(Exception):
    """The body went over the limit while it was read."""


async def _answer(send: Send, status: int, body: bytes, rid: str) -> int:
    """Send a JSON response with its request id; its status."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (REQUEST_ID_HEADER, rid.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
