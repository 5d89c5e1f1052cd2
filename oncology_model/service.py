"""The prediction web service (FastAPI): one model, loaded once at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from oncology_model import __version__
from oncology_model.bundle import ModelMetadata
from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, Prediction, Tumor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServiceSettings(BaseSettings):
    """Service configuration from ONCOLOGY_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="ONCOLOGY_", env_file=".env", extra="ignore")

    model_dir: Path = Field(description="the model bundle directory (metadata.json + model.skops)")
    max_batch: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)


class PredictionOut(BaseModel):
    """One prediction."""

    prediction: Prediction
    probability_malignant: float = Field(ge=0, le=1)
    model_version: str

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "prediction": "benign",
                    "probability_malignant": 0.0123,
                    "model_version": "20261125T020000Z-402c5853",
                }
            ]
        }
    }


class BatchIn(BaseModel):
    """Up to `max_batch` tumors."""

    tumors: list[Tumor] = Field(min_length=1)

    model_config = {"json_schema_extra": {"examples": [{"tumors": [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT]}]}}


class BatchOut(BaseModel):
    """Predictions in request order."""

    predictions: list[PredictionOut]


class Problem(BaseModel):
    """An error: what went wrong, and which field broke which rule."""

    message: str
    detail: list[dict[str, Any]] = Field(default_factory=list)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not Content-Length is sent.

    The body is read here, up to the limit, and handed on whole; FastAPI never sees an oversized one.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _too_large(self.limit, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


class PayloadTooLarge(Exception):
    """A request asks for more than the service's limits allow (answered with 413)."""


async def _too_large(limit: int, send: Send) -> None:
    body = Problem(message=f"request body: larger than the limit of {limit} bytes").model_dump_json().encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def get_classifier(request: Request) -> Classifier:
    """The classifier loaded at start-up."""
    model: Classifier | None = request.app.state.classifier
    if model is None:  # pragma: no cover - the lifespan loads it before the first request
        raise RuntimeError("model not loaded")
    return model


ClassifierDep = Annotated[Classifier, Depends(get_classifier)]


def _field(error: dict[str, Any]) -> str:
    """The field an error is about, e.g. `clump_thickness` or `tumors.3.mitoses`; `body` for unreadable JSON."""
    if error.get("type") == "json_invalid":
        return "body"
    return ".".join(str(part) for part in error["loc"] if part != "body") or "body"


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The service; the model bundle is loaded in the lifespan handler, and a bad bundle stops start-up."""
    settings = settings or ServiceSettings()  # type: ignore[call-arg]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.classifier = Classifier.from_bundle(settings.model_dir)
        yield

    app = FastAPI(
        title="Oncology web service",
        version=__version__,
        description="Classifies breast tumors (Wisconsin original data set) as benign or malignant.",
        lifespan=lifespan,
        responses={422: {"model": Problem}, 413: {"model": Problem}},
    )
    app.state.classifier = None

    @app.exception_handler(PayloadTooLarge)
    async def too_large(_: Request, exc: PayloadTooLarge) -> JSONResponse:
        return JSONResponse(status_code=413, content=Problem(message=str(exc)).model_dump())

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), exclude={"url", "input", "ctx"})
        message = "; ".join(f"{_field(e)}: {e['msg']}" for e in errors[:5])
        return JSONResponse(status_code=422, content={"message": message, "detail": errors})

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses={503: {"model": Problem}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the model is loaded."""
        model: Classifier | None = request.app.state.classifier
        if model is None:
            return JSONResponse(status_code=503, content={"message": "model not loaded"})
        return JSONResponse({"status": "ready", "model_version": model.version})

    @app.get("/v1/model", tags=["model"])
    async def model_info(model: ClassifierDep) -> ModelMetadata:
        """The loaded model's metadata and metrics."""
        return model.metadata

    @app.post("/v1/predictions", tags=["predictions"])
    async def predict(tumor: Tumor, model: ClassifierDep) -> PredictionOut:
        """Classify one tumor."""
        prediction, probability = model.predict(tumor)
        return PredictionOut(prediction=prediction, probability_malignant=probability, model_version=model.version)

    @app.post("/v1/predictions/batch", tags=["predictions"])
    async def predict_batch(batch: BatchIn, model: ClassifierDep) -> BatchOut:
        """Classify up to `max_batch` tumors at once."""
        if len(batch.tumors) > settings.max_batch:
            raise PayloadTooLarge(f"tumors: {len(batch.tumors)} items, more than the limit of {settings.max_batch}")
        return BatchOut(
            predictions=[
                PredictionOut(prediction=p, probability_malignant=prob, model_version=model.version)
                for p, prob in model.predict_many(batch.tumors)
            ]
        )

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
