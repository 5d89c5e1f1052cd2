"""The one train -> evaluate -> gate -> package sequence: its configuration reaches every step and the bundle."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from oncology_model.bundle import read_metadata
from oncology_model.candidate import Champion, make_candidate
from oncology_model.classifier import Classifier
from oncology_model.config import GateThresholds, TrainingConfig
from oncology_model.data import Dataset, parse_csv
from oncology_model.datamodel import Prediction, Tumor
from oncology_model.evaluation import QualityGate
from oncology_model.training import CV_SCORING
from tests.support.models import quick_candidate


def test_a_candidate_is_trained_evaluated_gated_and_saved(real_dataset: Dataset, tmp_path: Path) -> None:
    config = TrainingConfig()
    candidate = make_candidate(real_dataset, config, version="v-candidate", directory=tmp_path / "model", resamples=200)

    assert candidate.bundle_dir == tmp_path / "model"
    assert read_metadata(tmp_path / "model") == candidate.metadata
    assert candidate.decision.passed and candidate.metadata.gate == candidate.decision
    assert candidate.metadata.evaluation == candidate.evaluation
    assert candidate.evaluation.cv_scores == candidate.model.cv_scores
    assert candidate.evaluation.threshold == candidate.model.threshold.threshold
    assert candidate.metadata.rows == {"read": 699, "kept": 699, "train": 559, "test": 140}


def test_a_random_forest_candidate_passes_the_default_gate(rf_classifier: Classifier) -> None:
    decision = QualityGate().decide(rf_classifier.metadata.evaluation)
    assert decision.passed, decision.reasons


@pytest.mark.parametrize(("test_size", "n_test"), [(0.1, 70), (0.3, 210)])
def test_the_hold_out_share_sets_the_evaluations_test_set(
    real_dataset: Dataset, tmp_path: Path, test_size: float, n_test: int
) -> None:
    config = TrainingConfig(test_size=test_size, cv_folds=2)
    candidate = quick_candidate(real_dataset, config, version="v-share", directory=tmp_path / "m")

    assert candidate.evaluation.n_test == n_test == math.ceil(699 * test_size)
    assert candidate.metadata.rows["test"] == n_test and candidate.metadata.config.test_size == test_size


@pytest.mark.parametrize("folds", [2, 7])
def test_the_folds_set_the_cross_validation_count(real_dataset: Dataset, tmp_path: Path, folds: int) -> None:
    config = TrainingConfig(cv_folds=folds)
    candidate = quick_candidate(real_dataset, config, version="v-folds", directory=tmp_path / "m")

    assert sorted(candidate.evaluation.cv_scores) == sorted(CV_SCORING)
    assert all(len(scores) == folds for scores in candidate.evaluation.cv_scores.values())
    assert read_metadata(tmp_path / "m").config.cv_folds == folds


def test_a_fixed_threshold_is_stored_in_the_bundle_and_decides_the_served_label_at_the_boundary(
    real_dataset: Dataset, tmp_path: Path
) -> None:
    def served(threshold: float, name: str) -> Classifier:
        config = TrainingConfig(decision_threshold=threshold)
        quick_candidate(real_dataset, config, version=f"v-{name}", directory=tmp_path / name)
        return Classifier.from_bundle(tmp_path / name)

    first = served(0.5, "half")
    tumor = Tumor(**first.metadata.golden[0].tumor)
    _, probability = first.predict(tumor)

    at = served(probability, "at")
    above = served(math.nextafter(probability, 1.0), "above")

    for classifier, threshold in ((at, probability), (above, math.nextafter(probability, 1.0))):
        assert classifier.threshold == classifier.metadata.config.decision_threshold == threshold
        assert classifier.metadata.threshold is not None and classifier.metadata.threshold.target_recall is None
        assert classifier.metadata.evaluation.threshold == threshold
    assert at.predict(tumor) == (Prediction.MALIGNANT, probability)
    assert above.predict(tumor) == (Prediction.BENIGN, probability)


def test_a_rejected_candidate_is_saved_only_when_asked(real_csv: bytes, tmp_path: Path) -> None:
    lines = real_csv.decode().splitlines()
    noisy = [  # every fifth label flipped: the gate refuses the model
        ",".join([*cells[:-1], {"2": "4", "4": "2"}[cells[-1]]]) if n % 5 == 0 else line
        for n, (line, cells) in enumerate((line, line.split(",")) for line in lines)
    ]
    dataset = parse_csv(("\n".join(noisy) + "\n").encode())

    kept = quick_candidate(dataset, TrainingConfig(), version="v-kept", directory=tmp_path / "kept")
    dropped = quick_candidate(
        dataset, TrainingConfig(), version="v-dropped", directory=tmp_path / "dropped", save_rejected=False
    )

    assert not kept.decision.passed and read_metadata(tmp_path / "kept").gate == kept.decision
    assert not dropped.decision.passed and dropped.bundle_dir is None and not (tmp_path / "dropped").exists()
    assert dropped.metadata.model_sha256 == ""


def test_the_gate_settings_and_the_champion_decide(
    real_dataset: Dataset, session_classifier: Classifier, tmp_path: Path
) -> None:
    champion = Champion("v-champion", session_classifier)
    same = quick_candidate(
        real_dataset, TrainingConfig(), version="v-same", directory=tmp_path / "a", resamples=200, champion=champion
    )
    strict = make_candidate(
        real_dataset,
        TrainingConfig(),
        version="v-strict",
        directory=tmp_path / "b",
        gate=GateThresholds(min_recall=1.0, cv_repeats=1),
    )

    assert same.decision.passed and same.decision.champion_version == "v-champion"
    assert set(same.decision.comparison) == {"accuracy", "recall", "specificity", "roc_auc"}
    assert all(d.difference == 0 for d in same.decision.comparison.values())  # the same model as the champion
    assert not strict.decision.passed and any("< minimum 1.0000" in r for r in strict.decision.reasons)


@pytest.mark.property
def test_the_gate_gives_one_verdict_whatever_the_seed_where_one_hold_out_flips(
    real_dataset: Dataset, tmp_path: Path
) -> None:
    """Seeds move the hold-out split and the cross-validation folds; the floors, judged on the mean of 5 x 5-fold
    cross-validation, pass every time, although hold-out recall alone falls below 0.95 for some seeds. Seeds 1-20
    were measured (all passed; hold-out recall 0.9375 for seeds 8 and 14 only); the test runs those two and 1-4."""
    hold_out_recall = []
    for seed in (1, 2, 3, 4, 8, 14):
        candidate = make_candidate(
            real_dataset, TrainingConfig(seed=seed), version=f"v-{seed}", directory=tmp_path / str(seed), resamples=50
        )
        assert candidate.decision.passed, (seed, candidate.decision.reasons)
        assert candidate.evaluation.repeated_cv is not None
        assert candidate.evaluation.repeated_cv.metrics["recall"].value >= 0.97, seed
        hold_out_recall.append(candidate.evaluation.value("recall"))
    assert min(hold_out_recall) < GateThresholds().min_recall < max(hold_out_recall)
