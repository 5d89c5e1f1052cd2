"""Train bundles for tests through the package's own code."""

from __future__ import annotations

from pathlib import Path

from oncology_model.bundle import ModelMetadata
from oncology_model.candidate import make_candidate
from oncology_model.data import parse_csv
from oncology_model.training import TrainingConfig


def train_bundle(csv: bytes, directory: Path, version: str, config: TrainingConfig | None = None) -> ModelMetadata:
    """Validate, train, evaluate, gate and save a bundle (200 bootstrap resamples, to stay fast); its metadata."""
    candidate = make_candidate(
        parse_csv(csv), config or TrainingConfig(), version=version, directory=directory, resamples=200
    )
    return candidate.metadata
