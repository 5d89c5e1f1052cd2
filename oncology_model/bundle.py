"""Model bundles: the pipeline saved with skops (no pickle) plus metadata.json, written atomically."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from pydantic import BaseModel, Field, ValidationError
from sklearn.pipeline import Pipeline

from oncology_model.config import TrainingConfig
from oncology_model.data import ValidationReport
from oncology_model.datamodel import FEATURES
from oncology_model.errors import BundleError
from oncology_model.evaluation import Evaluation, GateDecision
from oncology_model.files import staged_directory
from oncology_model.reference import Reference, make_reference
from oncology_model.training import ThresholdChoice, TrainedModel

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
# Types outside skops' default trust that our own pipelines need; anything else in a bundle is refused.
TRUSTED_TYPES: tuple[str, ...] = ("numpy.dtype", "sklearn.tree._tree.Tree")


class GoldenCase(BaseModel):
    """A hold-out row and the probability the packaged model gives it: what the deployed service must answer."""

    tumor: dict[str, int]
    probability_malignant: float


class ModelMetadata(BaseModel):
    """What a bundle holds and how it was made."""

    model_version: str
    created_at: datetime
    data_sha256: str
    rows: dict[str, int] = Field(description="read, kept, train, test")
    config: TrainingConfig
    evaluation: Evaluation
    gate: GateDecision | None = None
    features: list[str] = Field(default_factory=lambda: list(FEATURES))
    python_version: str = Field(default_factory=platform.python_version)
    sklearn_version: str = sklearn.__version__
    git_revision: str | None = None
    model_sha256: str = ""
    threshold: ThresholdChoice | None = Field(default=None, description="how the decision threshold was chosen")
    golden: list[GoldenCase] = Field(
        default_factory=list, description="hold-out rows with their expected probabilities (deploy verification)"
    )
    reference: Reference | None = Field(
        default=None, description="the training split's score counts and predicted-malignant rows (drift monitor)"
    )


def describe_model(
    version: str,
    report: ValidationReport,
    model: TrainedModel,
    config: TrainingConfig,
    evaluation: Evaluation,
    gate: GateDecision | None,
) -> ModelMetadata:
    """The metadata of a freshly trained model (created now, with the git revision when known)."""
    return ModelMetadata(
        model_version=version,
        created_at=datetime.now(UTC),
        data_sha256=report.sha256,
        rows={
            "read": report.rows_read,
            "kept": report.rows_kept,
            "train": len(model.split.y_train),
            "test": len(model.split.y_test),
        },
        config=config.model_copy(update={"decision_threshold": model.threshold.threshold}),
        evaluation=evaluation,
        gate=gate,
        threshold=model.threshold,
        git_revision=git_revision(),
        golden=golden_set(model),
        reference=make_reference(
            model.split.X_train, model.pipeline.predict_proba(model.split.X_train)[:, 1] >= model.threshold.threshold
        ),
    )


def golden_set(model: TrainedModel) -> list[GoldenCase]:
    """The hold-out rows without missing values, with the fitted pipeline's probability of malignancy."""
    complete = ~np.isnan(model.split.X_test).any(axis=1)
    rows = model.split.X_test[complete]
    probabilities = model.pipeline.predict_proba(rows)[:, 1]
    return [
        GoldenCase(tumor=dict(zip(FEATURES, (int(v) for v in row), strict=True)), probability_malignant=float(p))
        for row, p in zip(rows, probabilities, strict=True)
    ]


def git_revision(cwd: Path | None = None) -> str | None:
    """The current git commit, when known."""
    if revision := os.environ.get("GIT_REVISION"):
        return revision
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def canonical_skops(data: bytes) -> bytes:
    """The same skops file with stable bytes: skops names arrays and shared objects by `id()` and stamps the
    time of writing, so two dumps of one model differ. Both are renumbered in schema order; times are 1980-01-01."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    names: dict[str, str] = {}
    ids: dict[int, int] = {}

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                node["file"] = names.setdefault(node["file"], f"{len(names)}.npy")
            if isinstance(node.get("__id__"), int):
                node["__id__"] = ids.setdefault(node["__id__"], len(ids))
            return {key: rename(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rename(item) for item in node]
        return node

    schema = rename(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            name = "schema.json" if item.filename == "schema.json" else names[item.filename]
            content = json.dumps(schema, indent=2).encode() if name == "schema.json" else source.read(item)
            target.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content, item.compress_type)
    return out.getvalue()


def save_bundle(pipeline: Pipeline, metadata: ModelMetadata, directory: Path) -> ModelMetadata:
    """Write model.skops and metadata.json into `directory` atomically; returns the metadata with the model hash."""
    model_bytes = canonical_skops(sio.dumps(pipeline))
    metadata = metadata.model_copy(update={"model_sha256": hashlib.sha256(model_bytes).hexdigest()})
    with staged_directory(directory) as staging:
        (staging / MODEL_FILE).write_bytes(model_bytes)
        (staging / METADATA_FILE).write_text(metadata.model_dump_json(indent=2))
    return metadata


def read_metadata(directory: Path) -> ModelMetadata:
    """Read and validate a bundle's metadata.json."""
    path = directory / METADATA_FILE
    try:
        return ModelMetadata.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"no model bundle at {directory}: {METADATA_FILE} is missing") from None
    except OSError as exc:
        raise BundleError(f"cannot read the model bundle at {directory}: {exc.strerror}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise BundleError(f"{path} is invalid: {exc.error_count()} errors, first: {where}: {first['msg']}") from None


def load_bundle(directory: Path) -> tuple[Pipeline, ModelMetadata]:
    """Load a bundle; refuses a model file whose hash differs from the metadata, or that holds untrusted types."""
    metadata = read_metadata(directory)
    try:
        model_bytes = (directory / MODEL_FILE).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"incomplete model bundle at {directory}: {MODEL_FILE} is missing") from None
    except OSError as exc:
        raise BundleError(f"cannot read {directory / MODEL_FILE}: {exc.strerror}") from None
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != metadata.model_sha256:
        raise BundleError(
            f"{directory / MODEL_FILE} does not match the sha256 recorded in {METADATA_FILE} "
            f"({digest[:12]} != {metadata.model_sha256[:12]}): the bundle was altered; rebuild it"
        )
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=model_bytes)) - set(TRUSTED_TYPES))
    except Exception as exc:
        raise BundleError(f"{directory / MODEL_FILE} is not a readable skops file: {exc}") from None
    if untrusted:
        raise BundleError(f"{directory / MODEL_FILE} holds types we do not trust: {', '.join(untrusted)}")
    try:
        pipeline = sio.loads(model_bytes, trusted=list(TRUSTED_TYPES))
    except Exception as exc:
        raise BundleError(f"cannot load {directory / MODEL_FILE}: {exc}") from None
    if not isinstance(pipeline, Pipeline):
        raise BundleError(f"{directory / MODEL_FILE} holds a {type(pipeline).__name__}, not a scikit-learn Pipeline")
    return pipeline, metadata
