"""The pipeline's one validated settings object (ONCOLOGY_* environment variables, `.env`, flow parameters)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError, WithJsonSchema, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from oncology_model.config import (
    BOOTSTRAP_RESAMPLES,
    CvFolds,
    DecisionThreshold,
    Estimator,
    GateThresholds,
    HoldOutShare,
    TargetRecall,
    TrainingConfig,
    first_error,
)
from oncology_pipeline import layout
from oncology_pipeline.errors import ConfigurationError

#: Settings that hold secrets: from the environment or `.env` only, never from a flow's `overrides`.
SECRET_SETTINGS = frozenset({"alert_webhook_url"})
#: The training defaults, from their one home (TrainingConfig); each of its fields is a setting of the same name.
_TRAINING = TrainingConfig()


class PipelineSettings(BaseSettings):
    """Where data, models and reports live, and how the stages behave. Nested values use `__`,
    e.g. ONCOLOGY_GATE__MIN_RECALL=0.97."""

    model_config = SettingsConfigDict(
        env_prefix="ONCOLOGY_", env_file=".env", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    # AWS
    aws_region: str = "eu-central-1"
    aws_credentials_block: str | None = Field(
        default=None, description="name of a prefect-aws AwsCredentials block; default: the standard AWS chain"
    )
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible or local endpoint")
    aws_endpoint_url: str | None = Field(default=None, description="endpoint for ECR/EKS/STS (local stacks)")

    # Data, models, reports
    data_bucket: str = "oncology-training-data"
    data_key: str = "breast-cancer-wisconsin/breast-cancer-wisconsin.data"
    model_bucket: str = "oncology-models"
    model_prefix: str = "models"
    metrics_bucket: str = "machine-learning-metrics"
    work_dir: Path = Field(default=Path(".work"), description="local cache and per-run files")
    labelled_prefix: str = Field(
        default="labelled", description="confirmed cases the monitor flow adds (data bucket), trained on nightly"
    )
    outcomes_prefix: str = Field(default="outcomes", description="confirmed diagnoses arrive here (data bucket)")
    prediction_log_bucket: str = Field(default="oncology-prediction-logs", description="the service's prediction log")
    prediction_log_prefix: str = "predictions"
    max_invalid_share: float = Field(default=0.05, ge=0, le=1)
    max_missing_share: float = Field(
        default=0.05, ge=0, lt=1, description="more of the kept rows missing a feature (imputed) fails the data"
    )

    # Training (the fields of TrainingConfig, with its rules and defaults) and the quality gate
    estimator: Estimator = _TRAINING.estimator
    hyperparameters: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    seed: int = _TRAINING.seed
    test_size: HoldOutShare = _TRAINING.test_size
    cv_folds: CvFolds = _TRAINING.cv_folds
    decision_threshold: DecisionThreshold = _TRAINING.decision_threshold
    target_recall: TargetRecall = _TRAINING.target_recall
    gate: GateThresholds = GateThresholds()
    bootstrap_resamples: int = Field(default=BOOTSTRAP_RESAMPLES, ge=100)

    # Tests: what the nightly's test stage runs (pytest arguments). Property, fuzz and file-determinism tests test
    # code, which the fingerprint covers and `make test` runs: the stage leaves them out.
    unit_tests: str = Field(
        default=(
            "tests/oncology_model/test_service.py tests/oncology_model/test_fastpath.py "
            "tests/oncology_model/test_bundle.py tests/oncology_model/test_classifier.py "
            "tests/oncology_model/test_datamodel.py -m 'not slow and not property'"
        ),
        description="the code the model ships with in the image: service contract, fast path, bundle, classifier",
    )
    model_tests: str = Field(
        default="tests/model", description="this model, against the trained bundle: behaviour, metrics, golden set"
    )

    # Publish: the web-service image
    ecr_repository: str = "oncology-webservice"
    registry_address: str | None = Field(
        default=None, description="push here instead of ECR's proxyEndpoint (a non-AWS or local registry)"
    )
    base_image: str = Field(default="python:3.11-slim", description="BASE_IMAGE of the Dockerfile")
    docker_host: str | None = Field(default=None, description="Docker engine address; default: DOCKER_HOST")
    smoke_test_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="the image's smoke test; stage_timeout_seconds allows as much for the deploy's verification",
    )

    # Deploy: the cluster
    team: str = "ml-platform"
    kube_namespace: str = "oncology"
    kubeconfig: str | None = Field(default=None, description="kubeconfig file; default: KUBECONFIG or ~/.kube/config")
    kube_context: str | None = Field(default=None, description="kubeconfig context (kind, minikube, k3d, EKS)")
    eks_cluster_name: str | None = Field(default=None, description="connect through EKS instead of a kubeconfig")
    kube_service: str = Field(default="oncology-webservice", description="the Service the verification asks")
    kube_service_port: str = Field(default="http", description="its port, by name or number")
    rollout_timeout_seconds: float = Field(
        default=600, gt=0, description="one rollout; counted twice in the deploy's worst case (rollout, rollback)"
    )
    rollout_poll_seconds: float = Field(default=2, gt=0)
    kube_request_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="the longest one Kubernetes API call waits for the API server (connecting, then each read); "
        "a hung server fails the call then, and a timed-out call is not sent again by the client",
    )
    reconcile: Literal["alert", "repair"] = Field(
        default="repair",
        description="a cluster found disagreeing with production's records: alert, or alert and roll production's "
        "recorded image out again (the pointer never moves to what was found)",
    )

    # Monitoring: the prediction log joined to confirmed diagnoses
    monitor_lookback_days: float = Field(
        default=30, gt=0, description="the prediction log the monitor joins outcomes to (diagnoses come days later)"
    )
    min_confirmed_malignant: int = Field(
        default=30, ge=1, description="confirmed malignant cases before a realised-recall alert may fire"
    )
    drift_window_hours: float = Field(
        default=24, gt=0, description="the latest predictions the drift watch compares with the training data"
    )
    drift_alpha: float = Field(
        default=0.05, gt=0, lt=1, description="the drift watch's false-alarm rate per window (Holm over ten tests)"
    )
    drift_min_rows: int = Field(default=200, ge=20, description="fewer rows in the window: 'insufficient data'")

    # Unattended nights: time limits, alerts, housekeeping
    pipeline_timeout_seconds: float = Field(
        default=5400,
        gt=0,
        description="the whole pipeline flow run; at least its four stages' limits (4 x stage_timeout_seconds)",
    )
    stage_timeout_seconds: float = Field(
        default=1350,
        gt=0,
        description="each of train, test, publish, deploy; at least the deploy's worst case: waiting for the deploy "
        "slot (deploy_lease_seconds) + the rollout (rollout_timeout_seconds) + its verification "
        "(smoke_test_timeout_seconds) + a rollback (rollout_timeout_seconds)",
    )
    test_timeout_seconds: float = Field(default=900, gt=0, description="one test suite (pytest) run")
    build_timeout_seconds: float = Field(default=900, gt=0, description="one image build")
    deploy_lease_seconds: float = Field(
        default=60,
        ge=10,
        description="the deploy slot's lease: its holder renews it while it runs; a dead holder's slot comes back "
        "after this long",
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="where failure alerts go (Slack/Teams/any webhook); default: no alerts"
    )
    alert_block: str = Field(default="oncology-alerts", description="the Prefect notification block of the alerts")
    nightly_deadline_hours: float = Field(
        default=4, gt=0, description="alert when the nightly has not Completed this long after it was due"
    )
    keep_local_versions: int = Field(default=3, ge=1, description="local images kept besides production's")
    keep_run_dirs: int = Field(default=10, ge=1, description="run folders kept under work_dir/runs")
    keep_candidates: int = Field(default=5, ge=1, description="newest S3 model versions the cleanup keeps")

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("model_prefix", "labelled_prefix", "outcomes_prefix", "prediction_log_prefix"):
            value = getattr(self, name)
            if value.strip("/") != value or not value:
                raise ValueError(f"{name}: must be non-empty, without leading or trailing '/'")
        if self.eks_cluster_name and (self.kubeconfig or self.kube_context):
            raise ValueError("eks_cluster_name: set either an EKS cluster or a kubeconfig/context, not both")
        if self.data_bucket == self.metrics_bucket and self.data_key.startswith(f"{layout.TRAINER}/"):
            raise ValueError("data_key: must not live under trainer/ in the metrics bucket (reports would clash)")
        self._check_time_limits()
        return self

    def _check_time_limits(self) -> None:
        """A stage's limit covers the deploy's worst case, and the pipeline's covers its four stages: otherwise a
        limit can land in a deploy that is still within its own limits (mid-rollout, mid-rollback)."""
        worst = self.deploy_lease_seconds + 2 * self.rollout_timeout_seconds + self.smoke_test_timeout_seconds
        if self.stage_timeout_seconds < worst:
            raise ValueError(
                f"stage_timeout_seconds: {self.stage_timeout_seconds:g} s is less than the deploy's worst case of "
                f"{worst:g} s (deploy_lease_seconds {self.deploy_lease_seconds:g} + rollout_timeout_seconds "
                f"{self.rollout_timeout_seconds:g} + smoke_test_timeout_seconds {self.smoke_test_timeout_seconds:g} + "
                f"a rollback's rollout_timeout_seconds {self.rollout_timeout_seconds:g}): raise stage_timeout_seconds "
                f"by {worst - self.stage_timeout_seconds:g} s, or lower those"
            )
        stages = 4 * self.stage_timeout_seconds
        if self.pipeline_timeout_seconds < stages:
            raise ValueError(
                f"pipeline_timeout_seconds: {self.pipeline_timeout_seconds:g} s is less than its four stages "
                f"(4 x stage_timeout_seconds {self.stage_timeout_seconds:g} = {stages:g} s): raise "
                f"pipeline_timeout_seconds by {stages - self.pipeline_timeout_seconds:g} s, or lower "
                "stage_timeout_seconds"
            )

    @property
    def cache_dir(self) -> Path:
        """Downloads kept between runs (training data by ETag, champion bundles)."""
        return self.work_dir / "cache"

    def training_config(self) -> TrainingConfig:
        """How the train stage fits the model: the settings named like TrainingConfig's fields."""
        return TrainingConfig.model_validate({name: getattr(self, name) for name in TrainingConfig.model_fields})

    def model_inputs(self) -> dict[str, Any]:
        """Every setting the trained model and its gate decision depend on (part of the run's fingerprint)."""
        return {
            "training": self.training_config().model_dump(mode="json"),
            "gate": self.gate.model_dump(mode="json"),
            "bootstrap_resamples": self.bootstrap_resamples,
            "max_invalid_share": self.max_invalid_share,
            "max_missing_share": self.max_missing_share,
        }

    def deploy_target(self) -> dict[str, str | None]:
        """Where a release goes: the registry and repository it is pushed to, the cluster, namespace, team and
        Service it serves from (part of the run's fingerprint: a new target is a new release)."""
        return {
            "registry": self.registry_address,
            "repository": self.ecr_repository,
            "cluster": self.eks_cluster_name or self.kube_context,
            "namespace": self.kube_namespace,
            "team": self.team,
            "service": self.kube_service,
        }

    def run_dir(self, version: str) -> Path:
        """Files of one pipeline run (bundle, coverage, build context)."""
        return self.work_dir / "runs" / version

    def with_overrides(self, overrides: dict[str, Any] | None) -> PipelineSettings:
        """A validated copy with per-run overrides (flow parameters) applied; an unknown key (a misspelling) or a
        bad value raises ConfigurationError in one line naming the key (and the closest setting) or the field, the
        rule and the value."""
        if not overrides:
            return self
        fields = type(self).model_fields
        unknown = sorted(name for name in overrides if name not in fields)
        if unknown:
            close = difflib.get_close_matches(unknown[0], fields, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see oncology_pipeline/settings.py"
            raise ConfigurationError(f"{unknown[0]}: no such setting ({hint}); nothing was run")
        secrets = sorted(name for name in overrides if name in SECRET_SETTINGS)
        if secrets:
            raise ConfigurationError(
                f"{secrets[0]}: a secret cannot be a per-run override (flow-run parameters are stored in plain "
                f"text): set ONCOLOGY_{secrets[0].upper()} where the worker runs"
            )
        try:
            return type(self).model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigurationError(f"invalid setting {first_error(exc)}") from None


def load_settings(overrides: dict[str, Any] | None = None) -> PipelineSettings:
    """Settings from the environment and `.env`, then per-run overrides; a bad value raises ConfigurationError
    in one line."""
    try:
        settings = PipelineSettings()
    except ValidationError as exc:
        raise ConfigurationError(f"invalid setting {first_error(exc)} (ONCOLOGY_* variables or .env)") from None
    return settings.with_overrides(overrides)


def _form(node: Any, definitions: dict[str, Any]) -> Any:
    """A JSON schema with every `$ref` replaced by the definition it names, and every default moved into the
    description (a form fills in defaults, and would send them)."""
    if isinstance(node, list):
        return [_form(value, definitions) for value in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _form(definitions[node["$ref"].rsplit("/", 1)[-1]], definitions)
    form = {key: _form(value, definitions) for key, value in node.items() if key != "default"}
    if node.get("default") is not None and not isinstance(node["default"], dict):
        form["description"] = f"{node.get('description', '')} (default: {json.dumps(node['default'])})".lstrip()
    return form


def _overrides_schema() -> dict[str, Any]:
    """The JSON schema of a run's `overrides`: every setting but the secrets, none required, nothing else allowed,
    no defaults (a form must not send the code's defaults over the worker's settings); each says its default."""
    schema = PipelineSettings.model_json_schema()
    definitions = schema.get("$defs", {})
    properties = {
        name: _form(field, definitions) for name, field in schema["properties"].items() if name not in SECRET_SETTINGS
    }
    return {
        "title": "Overrides",
        "description": "settings for this run; leave empty for the worker's (ONCOLOGY_* variables)",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


#: A flow's `overrides` parameter: a dict of settings for one run, shown as a form of the settings in the Prefect UI
#: (`with_overrides` refuses an unknown key, naming the closest).
Overrides = Annotated[dict[str, Any] | None, WithJsonSchema(_overrides_schema())]
