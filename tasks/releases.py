"""Release records and the production pointer: read, update whole, promote by compare-and-swap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from oncology_pipeline import modelstore, releases, s3store
from oncology_pipeline.errors import ConfigurationError
from oncology_pipeline.releases import OperatorAction, ReleaseRecord
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client
from tasks.policy import NETWORK_RETRIES


def record_uri(settings: PipelineSettings, version: str) -> str:
    """`s3://<model-bucket>/releases/<version>.json`."""
    return releases.record_uri(settings.model_bucket, version)


def stage_times(stage: str, outcome: str | None = None) -> dict[str, Any]:
    """The `stages` change that starts a stage (no outcome) or ends it."""
    now = datetime.now(UTC).isoformat()
    return {stage: {"started_at": now} if outcome is None else {"ended_at": now, "outcome": outcome}}


@task(name="update_release", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def update_release(settings: PipelineSettings, version: str, changes: dict[str, Any]) -> ReleaseRecord:
    """Merge `changes` into the version's release record and write it whole; shown as the `release` artifact."""
    s3 = aws_client(settings, "s3")
    record = releases.read_record(s3, settings.model_bucket, version) or ReleaseRecord(model_version=version)
    record = releases.merge(record, changes)
    releases.write_record(s3, settings.model_bucket, record)
    create_markdown_artifact(markdown=record.markdown(), key="release", description=f"Release record {version}")
    return record


@task(name="read_release", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def read_release(settings: PipelineSettings, version: str) -> ReleaseRecord:
    """A version's release record; ConfigurationError when the version has none."""
    record = releases.read_record(aws_client(settings, "s3"), settings.model_bucket, version)
    if record is None:
        raise ConfigurationError(
            f"{record_uri(settings, version)} does not exist: {version} was never trained by this pipeline"
        )
    return record


@task(name="promote_model", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def promote_model(settings: PipelineSettings, version: str, image: str, expected_etag: str) -> s3store.S3Object:
    """Point models/production.json at the verified `version` (compare-and-swap on `expected_etag`), and say so
    in its release record and in the record of the version it replaces (releases.promote: safe to retry)."""
    pointer = releases.promote(
        aws_client(settings, "s3"),
        settings.model_bucket,
        settings.model_prefix,
        version,
        image=image,
        expected_etag=expected_etag,
        release=record_uri(settings, version),
    )
    get_run_logger().info("production is now %s (%s), serving %s", version, pointer.uri, image)
    return pointer


@task(name="finish_promotion", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def finish_promotion(settings: PipelineSettings) -> list[str]:
    """Make the release records say what the production pointer says: a promotion cut off after its pointer write
    (a crash, S3 failing past the retries) is finished, never undone. Returns what it changed."""
    changed = releases.finish_promotion(aws_client(settings, "s3"), settings.model_bucket, settings.model_prefix)
    if changed:
        get_run_logger().warning("finished a promotion left half-done: %s", "; ".join(changed))
    return changed


@task(name="record_operator_action", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def record_operator_action(settings: PipelineSettings, action: str, version: str, reason: str | None) -> OperatorAction:
    """Say in the release records that a person put `version` in production (`pinned`, naming the version it
    replaced, from the pointer that was written) and, for a rollback, took that version out (`rolled_back`): a
    nightly never releases it, nor a model made from its inputs, again."""
    pointer = modelstore.read_pointer(aws_client(settings, "s3"), settings.model_bucket, settings.model_prefix)
    replaced = pointer.previous_version if pointer is not None and pointer.model_version == version else None
    done = OperatorAction(
        action=action,
        to=version,
        replaced=replaced,
        at=datetime.now(UTC),
        by=f"{flow_run.name} ({flow_run.ui_url})",
        reason=reason,
    )
    change = done.model_dump(mode="json")
    update_release.fn(settings, version, {"pinned": change, "rolled_back": None})
    if action == "rollback" and replaced is not None and replaced != version:
        update_release.fn(settings, replaced, {"rolled_back": change})
        get_run_logger().info("%s was rolled back to %s: a nightly will not release it again", replaced, version)
    return done


@task(name="production_version", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def production_version(settings: PipelineSettings) -> str | None:
    """The version the production pointer names now (None before the first promotion)."""
    pointer = modelstore.read_pointer(aws_client(settings, "s3"), settings.model_bucket, settings.model_prefix)
    return None if pointer is None else pointer.model_version


@task(name="announce_candidate", cache_policy=NO_CACHE)
def announce_candidate(version: str) -> str:
    """Say that `version` is a candidate, not production, and how to release it (log and artifact)."""
    command = f"prefect deployment run 'train-test-publish-deploy/nightly' --param model_version={version}"
    text = (
        f"Model {version} passed the quality gate and is stored as a **candidate**. Production does not change "
        f"until a release tests, publishes, deploys and verifies it:\n\n```bash\n{command}\n```"
    )
    create_markdown_artifact(markdown=text, key="candidate", description=f"Candidate {version}")
    get_run_logger().info("candidate %s stored; release it with: %s", version, command)
    return command
