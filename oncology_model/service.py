"""The prediction web service (FastAPI): one model, loaded once at start-up.

FastAPI holds the contract: routes, OpenAPI schema with examples, and every error body, which has one shape
(`Problem`: `message` + `detail`), whoever raised it: request validation (422), an unreadable body (400), a body
not declared JSON (415), limits (413), routing (404, 405). Valid prediction requests are answered before it, by
`oncology_model.fastpath.Front`, which also limits bodies and keeps the metrics.
"""

from __future__ import annotations

import email.message
import gc
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException

from oncology_model import __version__
from oncology_model.bundle import ModelMetadata
from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, Prediction, Tumor
from oncology_model.fastpath import REQUEST_ID_KEY, Front, Receive, Scope, Send
from oncology_model.metrics import CONTENT_TYPE, ServiceMetrics
from oncology_model.predictionlog import PredictionLog


class ServiceSettings(BaseSettings):
    """Service configuration from ONCOLOGY_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="ONCOLOGY_", env_file=".env", extra="ignore", env_ignore_empty=True)

    model_dir: Path = Field(description="the model bundle directory (metadata.json + model.skops)")
    max_batch: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    access_log: bool = Field(default=False, description="the server's log line per request (uvicorn's access log)")
    # The prediction log (off without a bucket); S3 credentials and endpoint come from the AWS default chain
    # (AWS_* variables, an IRSA role on EKS; AWS_ENDPOINT_URL_S3 for a local S3).
    log_bucket: str | None = Field(default=None, description="write every prediction to this S3 bucket")
    log_prefix: str = Field(default="predictions", min_length=1)
    log_flush_seconds: float = Field(default=30, gt=0, description="write the buffer at least this often")
    log_flush_records: int = Field(default=10_000, ge=1, description="write as soon as this many records wait")
    log_max_records: int = Field(default=100_000, ge=1, description="buffer cap: beyond it the oldest are dropped")
    log_shutdown_seconds: float = Field(default=20, gt=0, description="time to write the buffer on shutdown")
    pod_name: str = Field(default_factory=socket.gethostname, description="names the log's objects (the pod)")
    image_digest: str | None = Field(default=None, description="the serving image's digest, logged with each record")
    image_model_version: str | None = Field(
        default=None, description="the model version `image_digest` was set for: logged only when this pod serves it"
    )


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


class Readiness(BaseModel):
    """The service is ready: the model it serves."""

    status: Literal["ready"]
    model_version: str


class Problem(BaseModel):
    """An error: what went wrong, and which field broke which rule."""

    message: str
    detail: list[dict[str, Any]] = Field(default_factory=list)


class PayloadTooLarge(Exception):
    """A request asks for more than the service's limits allow (answered with 413)."""


class UnsupportedMediaType(Exception):
    """A body in a media type the operation does not take (answered with 415)."""


#: The media type the prediction endpoints take (and any `application/*+json`, as FastAPI parses those as JSON).
JSON_MEDIA_TYPE = "application/json"
#: The documented error answers every operation can give: a validation error, a body over the limit.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "The body or the batch is larger than the service's limit."},
    422: {"model": Problem, "description": "The body is not valid: `message` names each field and its rule."},
}
#: The documented error answers of an operation that takes a JSON body, besides the common ones.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body cannot be read as JSON (not UTF-8, nested too deeply, ...)."},
    415: {"model": Problem, "description": f"The body is not declared `{JSON_MEDIA_TYPE}` (`Content-Type`)."},
}


def _is_json(content_type: str) -> bool:
    """Whether FastAPI parses a body of this `Content-Type` as JSON: `application/json` or `application/*+json`."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def require_json(request: Request) -> None:
    """Refuse a body that is not declared JSON with 415, before validation would refuse it as "not an object".

    A body without `Content-Type` is refused too: FastAPI (`strict_content_type`, the default) does not read it as
    JSON, as a browser can send it cross-site without a CORS preflight. A request with no body at all passes, and
    gets the 422 that names the missing body. Only requests the fast path hands on get here.
    """
    content_type = request.headers.get("content-type")
    if content_type is not None and _is_json(content_type):
        return
    if content_type is None and not await request.body():
        return
    declared = f"{content_type!r} is not accepted" if content_type is not None else "missing"
    raise UnsupportedMediaType(f"{declared}; send the body as {JSON_MEDIA_TYPE}")


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


def _unreadable(cause: BaseException | None) -> str:
    """Why FastAPI could not read a body as JSON (it answers 400 with the cause chained)."""
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "a number with too many digits"
    return "not readable as JSON"


def problem_response(
    status: int, message: str, detail: list[dict[str, Any]], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer built from the documented `Problem` model."""
    content = Problem(message=message, detail=detail).model_dump()
    return JSONResponse(status_code=status, content=content, headers=headers)


def _no_access_log() -> None:
    """What uvicorn's `access_log=False` does, whichever way the server was started: with no handler on its access
    logger, uvicorn skips the line entirely (it looks once per connection, before any request of it)."""
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False


class Service(FastAPI):
    """FastAPI behind `Front`: HTTP requests reach `Front` first, which hands on what it does not answer."""

    front: Front

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


#: The prediction log's S3 client (botocore `Config`): the standard retry mode (3 attempts), and a connection S3 has
#: not accepted within 5 s is a failed attempt; the log's writer then retries with its own back-off.
LOG_S3_CONFIG: dict[str, Any] = {"retries": {"mode": "standard"}, "connect_timeout": 5, "read_timeout": 15}


def image_digest(settings: ServiceSettings, model_version: str) -> str | None:
    """The image digest to log: the one set (by the deploy, with the image) unless it was set for another model
    version, as when the image was changed by hand (`kubectl set image`) and the environment was left behind."""
    if settings.image_model_version not in (None, model_version):
        logging.getLogger(__name__).warning(
            "ONCOLOGY_IMAGE_DIGEST %s was set for model %s, and this pod serves %s: the log records no image digest",
            settings.image_digest,
            settings.image_model_version,
            model_version,
        )
        return None
    return settings.image_digest


def prediction_log(settings: ServiceSettings, model_version: str) -> PredictionLog | None:
    """The prediction log the settings ask for, not yet started; None without a log bucket."""
    if settings.log_bucket is None:
        return None
    import boto3  # only a service that logs pays for importing it
    from botocore.config import Config

    s3 = boto3.client("s3", config=Config(**LOG_S3_CONFIG))
    return PredictionLog(
        s3,
        settings.log_bucket,
        settings.log_prefix,
        pod=settings.pod_name,
        model_version=model_version,
        image_digest=image_digest(settings, model_version),
        flush_seconds=settings.log_flush_seconds,
        flush_records=settings.log_flush_records,
        max_records=settings.log_max_records,
    )


def create_app(settings: ServiceSettings | None = None) -> Service:
    """The service; the model bundle is loaded in the lifespan handler, and a bad bundle stops start-up."""
    settings = settings or ServiceSettings()  # type: ignore[call-arg]
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: Service) -> AsyncIterator[None]:
        model = app.state.classifier = Classifier.from_bundle(settings.model_dir)
        metrics.model(model.version, model.metadata.config.estimator)
        log = app.front.log = prediction_log(settings, model.version)
        if log is not None:
            metrics.prediction_log(log.counts)
            log.start()
        # The start-up heap (scikit-learn, scipy, FastAPI, the model: ~180k objects) never becomes garbage; frozen,
        # the collector stops walking it, and a full collection under load takes milliseconds instead of 100+ ms.
        gc.collect()
        gc.freeze()
        if not settings.access_log:
            _no_access_log()
        yield
        if log is not None:  # on shutdown (SIGTERM): write what is buffered
            log.close(settings.log_shutdown_seconds)

    app = Service(
        title="Oncology web service",
        version=__version__,
        description="Classifies breast tumors (Wisconsin original data set) as benign or malignant.",
        lifespan=lifespan,
        responses=COMMON_ERRORS,
    )
    app.state.classifier = None

    @app.exception_handler(PayloadTooLarge)
    async def too_large(_: Request, exc: PayloadTooLarge) -> JSONResponse:
        return problem_response(413, str(exc), [])

    @app.exception_handler(UnsupportedMediaType)
    async def unsupported_media_type(_: Request, exc: UnsupportedMediaType) -> JSONResponse:
        rule = {"type": "unsupported_media_type", "loc": ["header", "content-type"], "msg": str(exc)}
        return problem_response(415, f"content-type: {exc}", [rule])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """FastAPI's and Starlette's own errors (an unreadable body, an unknown path or method) as a `Problem`."""
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "There was an error parsing the body"
            reason = _unreadable(exc.__cause__)
            rule = {"type": "json_unreadable", "loc": ["body"], "msg": reason}
            return problem_response(400, f"body: {reason}", [rule], exc.headers)
        if exc.status_code == 404:
            return problem_response(404, f"{where}: no such path", [], exc.headers)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return problem_response(405, f"{where}: method not allowed (allowed: {allowed})", [], exc.headers)
        return problem_response(exc.status_code, f"{where}: {exc.detail}", [], exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), exclude={"url", "input", "ctx"})
        message = "; ".join(f"{_field(e)}: {e['msg']}" for e in errors[:5])
        return problem_response(422, message, errors)

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], response_model=Readiness, responses={503: {"model": Problem}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the model is loaded."""
        model: Classifier | None = request.app.state.classifier
        if model is None:
            return problem_response(503, "model not loaded", [])
        return JSONResponse({"status": "ready", "model_version": model.version})

    @app.get("/metrics", include_in_schema=False)  # operational, not part of the API contract
    async def prometheus() -> Response:
        """Prometheus metrics of this process (text exposition format)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/model", tags=["model"])
    async def model_info(model: ClassifierDep) -> ModelMetadata:
        """The loaded model's metadata and metrics."""
        return model.metadata

    @app.post("/v1/predictions", tags=["predictions"], dependencies=[Depends(require_json)], responses=BODY_ERRORS)
    async def predict(tumor: Tumor, model: ClassifierDep, request: Request) -> PredictionOut:
        """Classify one tumor."""
        prediction, probability = model.predict(tumor)
        metrics.predicted(prediction)
        if app.front.log is not None:
            app.front.log.add(request.scope[REQUEST_ID_KEY], (tumor.model_dump(),), ((prediction, probability),), False)
        return PredictionOut(prediction=prediction, probability_malignant=probability, model_version=model.version)

    @app.post(
        "/v1/predictions/batch", tags=["predictions"], dependencies=[Depends(require_json)], responses=BODY_ERRORS
    )
    async def predict_batch(batch: BatchIn, model: ClassifierDep, request: Request) -> BatchOut:
        """Classify up to `max_batch` tumors at once."""
        if len(batch.tumors) > settings.max_batch:
            raise PayloadTooLarge(f"tumors: {len(batch.tumors)} items, more than the limit of {settings.max_batch}")
        predictions = model.predict_many(batch.tumors)
        if app.front.log is not None:
            app.front.log.add(request.scope[REQUEST_ID_KEY], [t.model_dump() for t in batch.tumors], predictions, True)
        for label in Prediction:
            metrics.predicted(label, sum(p is label for p, _ in predictions))
        return BatchOut(
            predictions=[
                PredictionOut(prediction=p, probability_malignant=prob, model_version=model.version)
                for p, prob in predictions
            ]
        )

    app.front = Front(
        super(Service, app).__call__,
        state=app.state,
        metrics=metrics,
        routes=frozenset(getattr(route, "path", "") for route in app.routes),
        max_body=settings.max_body_bytes,
        max_batch=settings.max_batch,
    )
    return app
