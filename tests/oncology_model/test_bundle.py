"""Model bundles: round trip, atomic writes, integrity and type checks, clear errors."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from oncology_model.bundle import (
    METADATA_FILE,
    MODEL_FILE,
    ModelMetadata,
    load_bundle,
    read_metadata,
    save_bundle,
)
from oncology_model.errors import BundleError
from oncology_model.versioning import new_version as make_version

GRID = np.random.default_rng(3).integers(1, 11, size=(300, 9)).astype(np.float64)
GRID[::5, 5] = np.nan


class Foreign:
    """A step of a type no bundle should hold: defined here, outside scikit-learn and skops' trusted types."""

    def fit(self, X: Any, y: Any = None) -> Foreign:
        return self

    def transform(self, X: Any) -> Any:
        return X


def _proba(pipeline: Pipeline, X: NDArray[np.float64] = GRID) -> NDArray[np.float64]:
    result: NDArray[np.float64] = pipeline.predict_proba(X)
    return result


def _write_raw_bundle(directory: Path, model_bytes: bytes, metadata: ModelMetadata) -> None:
    """A bundle whose metadata records the true sha256 of `model_bytes`, so only other checks can refuse it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_bytes(model_bytes)
    recorded = metadata.model_copy(update={"model_sha256": hashlib.sha256(model_bytes).hexdigest()})
    (directory / METADATA_FILE).write_text(recorded.model_dump_json())


def test_round_trip(model_bundle_dir: Path, tmp_path: Path) -> None:
    pipeline, metadata = load_bundle(model_bundle_dir)
    target = tmp_path / "bundles" / "copy"
    saved = save_bundle(pipeline, metadata.model_copy(update={"model_version": "v-round-trip"}), target)
    loaded_pipeline, loaded_metadata = load_bundle(target)
    assert loaded_metadata == saved
    assert loaded_metadata.model_version == "v-round-trip"
    assert loaded_metadata.evaluation == metadata.evaluation
    assert loaded_metadata.config == metadata.config
    assert np.array_equal(_proba(loaded_pipeline), _proba(pipeline))
    assert sorted(p.name for p in target.iterdir()) == [METADATA_FILE, MODEL_FILE]


def test_save_records_the_model_sha256(model_bundle_dir: Path, tmp_path: Path) -> None:
    pipeline, metadata = load_bundle(model_bundle_dir)
    saved = save_bundle(pipeline, metadata.model_copy(update={"model_sha256": ""}), tmp_path / "b")
    digest = hashlib.sha256((tmp_path / "b" / MODEL_FILE).read_bytes()).hexdigest()
    assert saved.model_sha256 == digest
    assert json.loads((tmp_path / "b" / METADATA_FILE).read_text())["model_sha256"] == digest


def test_session_bundle_metadata(model_metadata: ModelMetadata) -> None:
    assert model_metadata.model_version == "20261125T000000Z-7e570001"
    assert model_metadata.features == [
        "clump_thickness",
        "uniformity_of_cell_size",
        "uniformity_of_cell_shape",
        "marginal_adhesion",
        "single_epithelial_cell_size",
        "bare_nuclei",
        "bland_chromatin",
        "normal_nucleoli",
        "mitoses",
    ]
    assert model_metadata.rows == {"read": 699, "kept": 699, "train": 559, "test": 140}
    assert re.fullmatch(r"[0-9a-f]{64}", model_metadata.model_sha256)
    assert re.fullmatch(r"[0-9a-f]{64}", model_metadata.data_sha256)


def test_save_leaves_no_temporary_directories(model_bundle_dir: Path, tmp_path: Path) -> None:
    pipeline, metadata = load_bundle(model_bundle_dir)
    parent = tmp_path / "bundles"
    save_bundle(pipeline, metadata, parent / "model")
    save_bundle(pipeline, metadata.model_copy(update={"model_version": "v2"}), parent / "model")  # replaces
    assert [p.name for p in parent.iterdir()] == ["model"]
    assert read_metadata(parent / "model").model_version == "v2"


def test_failed_save_keeps_the_old_bundle_and_leaves_no_temporary_directories(
    model_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, metadata = load_bundle(model_bundle_dir)
    parent = tmp_path / "bundles"
    save_bundle(pipeline, metadata, parent / "model")

    def fail(self: Path, *args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(OSError, match="No space left"):
        save_bundle(pipeline, metadata.model_copy(update={"model_version": "v2"}), parent / "model")
    monkeypatch.undo()
    assert [p.name for p in parent.iterdir()] == ["model"]
    assert load_bundle(parent / "model")[1].model_version == metadata.model_version


def test_replacing_a_bundle_never_loses_the_old_one_when_the_final_rename_fails(
    model_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, metadata = load_bundle(model_bundle_dir)
    parent = tmp_path / "bundles"
    save_bundle(pipeline, metadata, parent / "model")

    def fail(self: Path, target: object) -> Path:
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(Path, "rename", fail)
    with pytest.raises(OSError):
        save_bundle(pipeline, metadata.model_copy(update={"model_version": "v2"}), parent / "model")
    monkeypatch.undo()
    assert [p.name for p in parent.iterdir()] == ["model"], "the old bundle is gone: the replacement is not atomic"
    assert load_bundle(parent / "model")[1].model_version == metadata.model_version


def test_saved_bundle_directory_has_ordinary_permissions(model_bundle_dir: Path, tmp_path: Path) -> None:
    """A bundle is copied into the serving image and read by another user: it must not be private to its writer."""
    pipeline, metadata = load_bundle(model_bundle_dir)
    save_bundle(pipeline, metadata, tmp_path / "model")
    (tmp_path / "plain").mkdir()
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)  # what mkdir gives under the current umask
    assert oct(stat.S_IMODE((tmp_path / "model").stat().st_mode)) == oct(expected)


def test_tampered_model_file_is_refused(bundle_copy: Path) -> None:
    model = bundle_copy / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=re.escape("does not match the sha256 recorded in metadata.json")) as caught:
        load_bundle(bundle_copy)
    assert str(model) in str(caught.value)
    assert "rebuild it" in str(caught.value)


def test_appended_bytes_are_refused(bundle_copy: Path) -> None:
    with (bundle_copy / MODEL_FILE).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


def test_foreign_type_is_refused_even_with_a_matching_sha256(model_metadata: ModelMetadata, tmp_path: Path) -> None:
    X = np.random.default_rng(0).integers(1, 11, size=(60, 9)).astype(np.float64)
    y = (X.sum(axis=1) > 50).astype(np.int64)
    pipeline = Pipeline([("foreign", Foreign()), ("model", LogisticRegression().fit(X, y))])
    model_bytes = sio.dumps(pipeline)
    _write_raw_bundle(tmp_path / "model", model_bytes, model_metadata)
    with pytest.raises(BundleError, match="holds types we do not trust") as caught:
        load_bundle(tmp_path / "model")
    assert f"{__name__}.Foreign" in str(caught.value)


def test_a_model_that_is_not_a_pipeline_is_refused(model_metadata: ModelMetadata, tmp_path: Path) -> None:
    X = np.random.default_rng(0).integers(1, 11, size=(60, 9)).astype(np.float64)
    model = LogisticRegression().fit(X, (X[:, 0] > 5).astype(np.int64))
    _write_raw_bundle(tmp_path / "model", sio.dumps(model), model_metadata)
    with pytest.raises(BundleError, match="holds a LogisticRegression, not a scikit-learn Pipeline"):
        load_bundle(tmp_path / "model")


def test_a_corrupt_model_file_with_a_matching_sha256_is_a_bundle_error(
    model_metadata: ModelMetadata, tmp_path: Path
) -> None:
    _write_raw_bundle(tmp_path / "model", b"this is not a skops file", model_metadata)
    with pytest.raises(BundleError, match=re.escape(MODEL_FILE)):
        load_bundle(tmp_path / "model")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(
        BundleError, match=re.escape(f"no model bundle at {tmp_path / 'absent'}: metadata.json is missing")
    ):
        load_bundle(tmp_path / "absent")


def test_a_file_instead_of_a_directory_is_a_bundle_error(tmp_path: Path) -> None:
    path = tmp_path / "model"
    path.write_text("not a directory")
    with pytest.raises(BundleError, match=re.escape(str(path))):
        load_bundle(path)


def test_missing_metadata(bundle_copy: Path) -> None:
    (bundle_copy / METADATA_FILE).unlink()
    with pytest.raises(BundleError, match=re.escape("metadata.json is missing")):
        load_bundle(bundle_copy)


def test_missing_model_file(bundle_copy: Path) -> None:
    (bundle_copy / MODEL_FILE).unlink()
    with pytest.raises(
        BundleError, match=re.escape(f"incomplete model bundle at {bundle_copy}: model.skops is missing")
    ):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "content",
    [pytest.param("{not json", id="not-json"), pytest.param("", id="empty"), pytest.param("[]", id="a-list")],
)
def test_invalid_metadata_json(bundle_copy: Path, content: str) -> None:
    (bundle_copy / METADATA_FILE).write_text(content)
    with pytest.raises(BundleError, match=re.escape(f"{bundle_copy / METADATA_FILE} is invalid: 1 errors, first: ")):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("field", ["model_version", "data_sha256", "evaluation"])
def test_metadata_missing_a_field_names_the_field(bundle_copy: Path, field: str) -> None:
    data = json.loads((bundle_copy / METADATA_FILE).read_text())
    del data[field]
    (bundle_copy / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=re.escape("metadata.json is invalid")) as caught:
        load_bundle(bundle_copy)
    assert field in str(caught.value)


def test_metadata_without_model_sha256_is_refused(bundle_copy: Path) -> None:
    data = json.loads((bundle_copy / METADATA_FILE).read_text())
    del data["model_sha256"]
    (bundle_copy / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


def test_make_version_format() -> None:
    digest = hashlib.sha256(b"data").hexdigest()
    assert make_version(digest, datetime(2026, 11, 25, 3, 0, 0, tzinfo=UTC)) == f"20261125T030000Z-{digest[:8]}"


def test_make_version_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert make_version("402c5853ffff", datetime(2026, 11, 25, 5, 0, 7, tzinfo=plus_two)) == "20261125T030007Z-402c5853"


def test_make_version_defaults_to_now_and_sorts_by_time() -> None:
    version = make_version("0123456789abcdef")
    assert re.fullmatch(r"\d{8}T\d{6}Z-01234567", version)
    earlier = make_version("ffffffff", datetime(2020, 1, 1, tzinfo=UTC))
    later = make_version("00000000", datetime(2020, 1, 2, tzinfo=UTC))
    assert earlier < later


def test_git_revision_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from oncology_model.bundle import git_revision

    monkeypatch.setenv("GIT_REVISION", "abc123")
    assert git_revision() == "abc123"


def test_git_revision_outside_a_repository_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from oncology_model.bundle import git_revision

    monkeypatch.delenv("GIT_REVISION", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert git_revision(tmp_path) is None


_TRAIN_AND_DUMP = """
import hashlib, sys
import numpy as np
from oncology_model.bundle import canonical_skops
from oncology_model.config import TrainingConfig
from oncology_model.training import build_pipeline
import skops.io as sio
X = np.random.default_rng(0).integers(1, 11, size=(80, 9)).astype(float)
pipeline = build_pipeline(TrainingConfig(estimator=sys.argv[1])).fit(X, (X[:, 0] > 5).astype(int))
raw = sio.dumps(pipeline)
print(hashlib.sha256(raw).hexdigest(), hashlib.sha256(canonical_skops(raw)).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.property
@pytest.mark.parametrize("estimator", ["logistic_regression", "random_forest", "gradient_boosting"])
def test_the_same_training_gives_the_same_model_file_bytes(estimator: str) -> None:
    """skops names arrays by id() and stamps the time of writing; two processes training the same model must
    still write identical model files."""
    import subprocess
    import sys

    runs = [
        subprocess.run(
            [sys.executable, "-c", _TRAIN_AND_DUMP, estimator], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs[0][0] != runs[1][0]  # skops alone: different bytes
    assert runs[0][1] == runs[1][1]


def test_a_canonical_model_file_loads_to_the_same_predictions(model_bundle_dir: Path) -> None:
    from oncology_model.bundle import TRUSTED_TYPES, canonical_skops

    pipeline = sio.loads((model_bundle_dir / MODEL_FILE).read_bytes(), trusted=list(TRUSTED_TYPES))
    again = sio.loads(canonical_skops(sio.dumps(pipeline)), trusted=list(TRUSTED_TYPES))
    X = np.random.default_rng(1).integers(1, 11, size=(200, 9)).astype(float)
    assert np.array_equal(again.predict_proba(X), pipeline.predict_proba(X))
