"""The pipeline's one validated settings object (ONCOLOGY_* environment variables, `.env`, flow parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from oncology_model.evaluation import GateThresholds
from oncology_model.training import Estimator


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
    max_invalid_share: float = Field(default=0.05, ge=0, le=1)

    # Training and the quality gate
    estimator: Estimator = "logistic_regression"
    hyperparameters: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    seed: int = 42
    gate: GateThresholds = GateThresholds()
    bootstrap_resamples: int = Field(default=1000, ge=100)

    # Tests
    unit_tests: str = "tests/oncology_model"
    model_tests: str = "tests/model"

    team: str = "ml-platform"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.model_prefix.strip("/") != self.model_prefix or not self.model_prefix:
            raise ValueError("model_prefix: must be non-empty, without leading or trailing '/'")
        if self.data_bucket == self.metrics_bucket and self.data_key.startswith("trainer/"):
            raise ValueError("data_key: must not live under trainer/ in the metrics bucket (reports would clash)")
        return self

    @property
    def cache_dir(self) -> Path:
        """Downloads kept between runs (training data by ETag, champion bundles)."""
        return self.work_dir / "cache"

    def run_dir(self, version: str) -> Path:
        """Files of one pipeline run (bundle, coverage, build context)."""
        return self.work_dir / "runs" / version

    def with_overrides(self, overrides: dict[str, Any] | None) -> PipelineSettings:
        """A validated copy with per-run overrides (flow parameters) applied."""
        if not overrides:
            return self
        return type(self).model_validate({**self.model_dump(), **overrides})


def load_settings(overrides: dict[str, Any] | None = None) -> PipelineSettings:
    """Settings from the environment and `.env`, then per-run overrides."""
    return PipelineSettings().with_overrides(overrides)
