"""Train bundles for tests through the package's own code."""

from __future__ import annotations

from pathlib import Path

from oncology_model.bundle import ModelMetadata
from oncology_model.candidate import make_candidate
from oncology_model.data import parse_csv
from oncology_model.evaluation import GateThresholds
from oncology_model.training import TrainingConfig

#: The gate's floors on one 5-fold pass instead of five (0.3 s instead of 1.4 s for logistic regression, 3 s
#: instead of 13 s for the test forest): for bundles that are the subject of other tests. The repeats themselves
#: are tested in tests/oncology_model/test_candidate.py.
ONE_CV_PASS = GateThresholds(cv_repeats=1)


def train_bundle(csv: bytes, directory: Path, version: str, config: TrainingConfig | None = None) -> ModelMetadata:
    """Validate, train, evaluate, gate and save a bundle (200 bootstrap resamples and one cross-validation pass, to
    stay fast); its metadata."""
    candidate = make_candidate(
        parse_csv(csv),
        config or TrainingConfig(),
        version=version,
        directory=directory,
        resamples=200,
        gate=ONE_CV_PASS,
    )
    return candidate.metadata
