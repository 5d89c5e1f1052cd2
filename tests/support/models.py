"""Train bundles for tests through the package's own code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncology_model.bundle import ModelMetadata
from oncology_model.candidate import Candidate, make_candidate
from oncology_model.config import GateThresholds, TrainingConfig
from oncology_model.data import Dataset, parse_csv

#: The version of the random-forest bundle the model package's tests train (tests/oncology_model/conftest.py).
RF_VERSION = "20261125T000000Z-rforest1"

#: The gate's floors on one 5-fold pass instead of five (0.3 s instead of 1.4 s for logistic regression, 3 s
#: instead of 13 s for the test forest): for bundles that are the subject of other tests. The repeats themselves
#: are tested in tests/oncology_model/test_candidate.py.
ONE_CV_PASS = GateThresholds(cv_repeats=1)


def quick_candidate(
    dataset: Dataset, config: TrainingConfig, *, version: str, directory: Path, **options: Any
) -> Candidate:
    """`make_candidate` with test-sized work unless `options` say otherwise: 100 bootstrap resamples and one
    cross-validation pass (`ONE_CV_PASS`)."""
    return make_candidate(
        dataset, config, version=version, directory=directory, **{"resamples": 100, "gate": ONE_CV_PASS, **options}
    )


def train_bundle(csv: bytes, directory: Path, version: str, config: TrainingConfig | None = None) -> ModelMetadata:
    """Validate, train, evaluate, gate and save a bundle (200 bootstrap resamples and one cross-validation pass, to
    stay fast); its metadata."""
    candidate = quick_candidate(
        parse_csv(csv), config or TrainingConfig(), version=version, directory=directory, resamples=200
    )
    return candidate.metadata
