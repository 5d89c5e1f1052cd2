"""The pipeline settings: defaults, ONCOLOGY_* variables, `.env`, per-run overrides and their validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from oncology_model.config import GateThresholds, TrainingConfig
from oncology_pipeline.errors import ConfigurationError
from oncology_pipeline.settings import PipelineSettings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ONCOLOGY_* variable from outside, and a working directory without a `.env`."""
    for name in list(os.environ):
        if name.upper().startswith("ONCOLOGY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = PipelineSettings()

    assert settings.metrics_bucket == "machine-learning-metrics"
    assert settings.data_bucket == "oncology-training-data"
    assert settings.data_key == "breast-cancer-wisconsin/breast-cancer-wisconsin.data"
    assert settings.model_bucket == "oncology-models"
    assert settings.model_prefix == "models"
    assert settings.aws_region == "eu-central-1"
    assert settings.s3_endpoint_url is None
    assert settings.aws_endpoint_url is None
    assert settings.aws_credentials_block is None
    assert settings.work_dir == Path(".work")
    assert settings.estimator == "logistic_regression"
    assert settings.seed == 42
    assert settings.gate == GateThresholds()
    assert settings.gate.min_recall == 0.95
    assert settings.max_invalid_share == 0.05
    assert settings.bootstrap_resamples == 1000


def test_environment_variables_with_the_oncology_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ONCOLOGY_METRICS_BUCKET", "team-metrics")
    monkeypatch.setenv("ONCOLOGY_S3_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("ONCOLOGY_SEED", "7")
    monkeypatch.setenv("ONCOLOGY_ESTIMATOR", "random_forest")
    monkeypatch.setenv("ONCOLOGY_WORK_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("METRICS_BUCKET", "not-ours")

    settings = PipelineSettings()

    assert settings.metrics_bucket == "team-metrics"
    assert settings.s3_endpoint_url == "http://127.0.0.1:4566"
    assert settings.seed == 7
    assert settings.estimator == "random_forest"
    assert settings.work_dir == tmp_path / "w"


def test_a_nested_gate_threshold_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOLOGY_GATE__MIN_RECALL", "0.97")

    settings = PipelineSettings()

    assert settings.gate.min_recall == 0.97
    assert settings.gate.min_roc_auc == GateThresholds().min_roc_auc, "the other thresholds keep their defaults"


def test_an_invalid_environment_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOLOGY_GATE__MIN_RECALL", "1.5")

    with pytest.raises(ValidationError) as raised:
        PipelineSettings()

    assert [error["loc"] for error in raised.value.errors()] == [("gate", "min_recall")]


def test_a_dotenv_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ONCOLOGY_MODEL_BUCKET=from-dotenv\nONCOLOGY_TEAM=from-dotenv\nUNRELATED=1\n")
    monkeypatch.setenv("ONCOLOGY_TEAM", "from-environment")

    settings = PipelineSettings()

    assert settings.model_bucket == "from-dotenv"
    assert settings.team == "from-environment"


def test_settings_are_frozen() -> None:
    settings = PipelineSettings()
    with pytest.raises(ValidationError):
        settings.seed = 1


def test_with_overrides_returns_a_validated_copy() -> None:
    settings = PipelineSettings()

    changed = settings.with_overrides({"seed": "13", "work_dir": "/tmp/run", "gate": {"min_recall": 0.99}})

    assert changed.seed == 13
    assert changed.work_dir == Path("/tmp/run")
    assert changed.gate.min_recall == 0.99
    assert settings.seed == 42, "the original is unchanged"
    assert changed.metrics_bucket == settings.metrics_bucket


@pytest.mark.parametrize("overrides", [None, {}])
def test_no_overrides_give_the_same_settings(overrides: dict[str, object] | None) -> None:
    settings = PipelineSettings()
    assert settings.with_overrides(overrides) is settings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_invalid_share": 2}, "max_invalid_share: Input should be less than or equal to 1 (got 2)"),
        ({"seed": "not a number"}, "seed: Input should be a valid integer, unable to parse string as an integer"),
        ({"bootstrap_resamples": 10}, "bootstrap_resamples: Input should be greater than or equal to 100 (got 10)"),
        ({"estimator": "deep_net"}, "estimator: Input should be 'logistic_regression', 'random_forest' or"),
        ({"gate": {"min_recall": -0.1}}, "gate.min_recall: Input should be greater than or equal to 0 (got -0.1)"),
        ({"gate": {"min_recal": 0.9}}, "gate.min_recal: Extra inputs are not permitted (got 0.9)"),
        ({"test_size": 0}, "test_size: Input should be greater than 0 (got 0)"),
        ({"test_size": 0.5}, "test_size: Input should be less than 0.5 (got 0.5)"),
        ({"cv_folds": 1}, "cv_folds: Input should be greater than or equal to 2 (got 1)"),
        ({"cv_folds": 2.5}, "cv_folds: Input should be a valid integer, got a number with a fractional part"),
        ({"decision_threshold": 0.0}, "decision_threshold: Input should be greater than 0 (got 0.0)"),
        ({"decision_threshold": 1}, "decision_threshold: Input should be less than 1 (got 1)"),
        ({"target_recall": 0}, "target_recall: Input should be greater than 0 (got 0)"),
        ({"reconcile": "fix"}, "reconcile: Input should be 'alert' or 'repair' (got 'fix')"),
    ],
)
def test_a_bad_override_is_refused_in_one_line_naming_the_field_and_the_rule(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        PipelineSettings().with_overrides(overrides)

    assert str(raised.value).startswith(f"invalid setting {message}")
    assert "\n" not in str(raised.value)


def test_a_bad_environment_value_is_refused_in_one_line_by_load_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOLOGY_CV_FOLDS", "1")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert str(raised.value) == (
        "invalid setting cv_folds: Input should be greater than or equal to 2 (got '1') (ONCOLOGY_* variables or .env)"
    )


def test_the_training_settings_default_to_the_training_configuration() -> None:
    assert PipelineSettings().training_config() == TrainingConfig()


def test_training_settings_from_the_environment_and_per_run_reach_the_training_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONCOLOGY_TEST_SIZE", "0.3")
    monkeypatch.setenv("ONCOLOGY_DECISION_THRESHOLD", "0.4")
    settings = load_settings({"cv_folds": 3, "target_recall": 0.9})

    config = settings.training_config()

    assert (config.test_size, config.cv_folds, config.decision_threshold, config.target_recall) == (0.3, 3, 0.4, 0.9)
    assert settings.model_inputs()["training"] == config.model_dump(mode="json")
    assert settings.with_overrides({"decision_threshold": None}).training_config().decision_threshold is None


@pytest.mark.parametrize(
    "change",
    [
        {"test_size": 0.25},
        {"cv_folds": 10},
        {"decision_threshold": 0.3},
        {"target_recall": 0.95},
        {"gate": {"champion_margin": 0.01}},
    ],
)
def test_each_training_and_gate_setting_is_a_model_input(change: dict[str, object]) -> None:
    settings = PipelineSettings()
    assert settings.with_overrides(change).model_inputs() != settings.model_inputs()


def test_a_partial_gate_override_keeps_the_configured_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow parameter that changes one threshold must not reset the others set in ONCOLOGY_GATE__*."""
    monkeypatch.setenv("ONCOLOGY_GATE__MIN_ROC_AUC", "0.99")
    settings = load_settings()
    assert settings.gate.min_roc_auc == 0.99

    changed = settings.with_overrides({"gate": {"min_recall": 0.98}})

    assert changed.gate.min_recall == 0.98
    assert changed.gate.min_roc_auc == 0.99


def test_load_settings_applies_overrides_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOLOGY_SEED", "7")
    monkeypatch.setenv("ONCOLOGY_TEAM", "oncology")

    settings = load_settings({"seed": 8})

    assert settings.seed == 8
    assert settings.team == "oncology"


@pytest.mark.parametrize("prefix", ["models/", "/models", "/", ""])
def test_model_prefix_with_a_leading_or_trailing_slash_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match=r"model_prefix: must be non-empty, without leading or trailing '/'"):
        PipelineSettings(model_prefix=prefix)


def test_model_prefix_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCOLOGY_MODEL_PREFIX", "models/")
    with pytest.raises(ValidationError, match="model_prefix"):
        PipelineSettings()


def test_model_prefix_override_is_checked_too() -> None:
    with pytest.raises(ConfigurationError, match=r"^invalid setting model_prefix: must be non-empty"):
        PipelineSettings().with_overrides({"model_prefix": "/models"})


def test_a_nested_model_prefix_is_accepted() -> None:
    assert PipelineSettings(model_prefix="oncology/models").model_prefix == "oncology/models"


def test_training_data_under_the_reports_in_the_metrics_bucket_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"data_key: must not live under trainer/"):
        PipelineSettings(data_bucket="shared", metrics_bucket="shared", data_key="trainer/data.csv")
    assert PipelineSettings(data_bucket="shared", metrics_bucket="shared", data_key="data/data.csv").data_key == (
        "data/data.csv"
    )
    assert PipelineSettings(metrics_bucket="other", data_key="trainer/data.csv").data_key == "trainer/data.csv"


def test_cache_and_run_directories_derive_from_the_work_dir(tmp_path: Path) -> None:
    settings = PipelineSettings(work_dir=tmp_path / "work")

    assert settings.cache_dir == tmp_path / "work" / "cache"
    assert settings.run_dir("20261125T020000Z-3fa85f64") == tmp_path / "work" / "runs" / "20261125T020000Z-3fa85f64"
    assert not (tmp_path / "work").exists(), "deriving paths creates nothing"


def test_default_directories_are_relative_to_the_working_directory() -> None:
    settings = PipelineSettings()
    assert settings.cache_dir == Path(".work/cache")
    assert settings.run_dir("v1") == Path(".work/runs/v1")


@pytest.mark.parametrize("other", [{"kubeconfig": "/etc/kube/config"}, {"kube_context": "kind-oncology"}])
def test_an_eks_cluster_and_a_kubeconfig_together_are_refused(other: dict[str, str]) -> None:
    with pytest.raises(
        ConfigurationError, match=r"eks_cluster_name: set either an EKS cluster or a kubeconfig/context"
    ):
        PipelineSettings().with_overrides({"eks_cluster_name": "oncology", **other})
    assert PipelineSettings(eks_cluster_name="oncology").eks_cluster_name == "oncology"
    assert PipelineSettings().with_overrides(other).eks_cluster_name is None


def test_publish_and_deploy_defaults() -> None:
    settings = PipelineSettings()

    assert settings.ecr_repository == "oncology-webservice"
    assert settings.registry_address is None
    assert settings.kube_namespace == "oncology"
    assert settings.rollout_timeout_seconds == 600
    assert settings.rollout_poll_seconds == 2
    assert settings.reconcile == "repair"


@pytest.mark.parametrize(
    "field",
    ["rollout_timeout_seconds", "rollout_poll_seconds", "smoke_test_timeout_seconds", "kube_request_timeout_seconds"],
)
def test_timeouts_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^invalid setting {field}: Input should be greater than 0 "):
        PipelineSettings().with_overrides({field: 0})


def test_a_secret_cannot_be_a_per_run_override() -> None:
    with pytest.raises(ConfigurationError, match=r"alert_webhook_url: a secret cannot be a per-run override"):
        PipelineSettings().with_overrides({"alert_webhook_url": "https://hooks.example/secret"})
    assert (
        PipelineSettings.model_validate({"alert_webhook_url": "https://h.example/x"}).with_overrides({"seed": 1}).seed
        == 1
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seeed": 7, "target_recal": 0.5}, "seeed: no such setting (did you mean 'seed'?); nothing was run"),
        ({"target_recal": 0.5}, "target_recal: no such setting (did you mean 'target_recall'?); nothing was run"),
        ({"colour": "red"}, "colour: no such setting (see oncology_pipeline/settings.py); nothing was run"),
    ],
)
def test_a_misspelled_override_is_refused_naming_the_closest_setting(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(overrides)
    assert str(refused.value) == message


# --- time limits that add up ----------------------------------------------------------------------------


def test_the_default_time_limits_add_up() -> None:
    settings = PipelineSettings()

    assert (settings.pipeline_timeout_seconds, settings.stage_timeout_seconds) == (5400, 1350)
    assert settings.kube_request_timeout_seconds == 30
    deploy_worst_case = (
        settings.deploy_lease_seconds
        + settings.rollout_timeout_seconds
        + settings.smoke_test_timeout_seconds
        + settings.rollout_timeout_seconds
    )
    assert deploy_worst_case == 1320 <= settings.stage_timeout_seconds
    assert 4 * settings.stage_timeout_seconds <= settings.pipeline_timeout_seconds


STAGE_TOO_SHORT = (
    "stage_timeout_seconds: 1200 s is less than the deploy's worst case of 1320 s (deploy_lease_seconds 60 + "
    "rollout_timeout_seconds 600 + smoke_test_timeout_seconds 60 + a rollback's rollout_timeout_seconds 600): "
    "raise stage_timeout_seconds by 120 s, or lower those"
)
PIPELINE_TOO_SHORT = (
    "pipeline_timeout_seconds: 3600 s is less than its four stages (4 x stage_timeout_seconds 1350 = 5400 s): "
    "raise pipeline_timeout_seconds by 1800 s, or lower stage_timeout_seconds"
)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stage_timeout_seconds": 1200}, STAGE_TOO_SHORT),
        (
            {"rollout_timeout_seconds": 700, "deploy_lease_seconds": 30, "smoke_test_timeout_seconds": 10},
            "stage_timeout_seconds: 1350 s is less than the deploy's worst case of 1440 s (deploy_lease_seconds 30 + "
            "rollout_timeout_seconds 700 + smoke_test_timeout_seconds 10 + a rollback's rollout_timeout_seconds "
            "700): raise stage_timeout_seconds by 90 s, or lower those",
        ),
        ({"pipeline_timeout_seconds": 3600}, PIPELINE_TOO_SHORT),
        (
            {"stage_timeout_seconds": 2000},
            "pipeline_timeout_seconds: 5400 s is less than its four stages (4 x stage_timeout_seconds 2000 = 8000 s): "
            "raise pipeline_timeout_seconds by 2600 s, or lower stage_timeout_seconds",
        ),
    ],
)
def test_time_limits_that_do_not_add_up_are_refused_in_one_line(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        PipelineSettings().with_overrides(overrides)

    assert str(raised.value) == f"invalid setting {message}"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ONCOLOGY_STAGE_TIMEOUT_SECONDS", "1200", STAGE_TOO_SHORT),
        ("ONCOLOGY_PIPELINE_TIMEOUT_SECONDS", "3600", PIPELINE_TOO_SHORT),
    ],
)
def test_time_limits_from_the_environment_that_do_not_add_up_are_refused_by_load_settings(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert str(raised.value) == f"invalid setting {message} (ONCOLOGY_* variables or .env)"


def test_small_limits_that_add_up_are_accepted() -> None:
    """What a test sets to make a stage time out quickly: every limit the deploy adds up to, small."""
    small = {
        "stage_timeout_seconds": 10.5,
        "deploy_lease_seconds": 10,
        "rollout_timeout_seconds": 0.1,
        "smoke_test_timeout_seconds": 0.1,
    }
    assert PipelineSettings().with_overrides(small).stage_timeout_seconds == 10.5


def test_every_flow_shows_the_settings_as_the_form_of_its_overrides() -> None:
    """The Prefect UI draws a run's form from this schema: every setting but the secrets, no defaults (a form must
    not send the code's defaults over the worker's settings), and no other key."""
    from prefect.utilities.callables import parameter_schema

    from flows.cleanup import cleanup
    from flows.deploy import deploy
    from flows.monitor import monitor
    from flows.pipeline import train_test_publish_deploy
    from flows.publish import publish
    from flows.rollback import rollback
    from flows.test import run_test_suites
    from flows.train import train

    for flow in (train, run_test_suites, publish, deploy, train_test_publish_deploy, rollback, monitor, cleanup):
        form = parameter_schema(flow.fn).model_dump()["properties"]["overrides"]
        fields = form["properties"]
        assert form["additionalProperties"] is False and "alert_webhook_url" not in fields, flow.name
        assert set(fields) == set(PipelineSettings.model_fields) - {"alert_webhook_url"}, flow.name
        assert '"default"' not in json.dumps(fields), flow.name  # nested settings (the gate) too
        assert "(default: 42)" in fields["seed"]["description"]
        assert fields["gate"]["properties"]["min_recall"]["type"] == "number"  # nested settings drawn inline
