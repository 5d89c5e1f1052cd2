"""Housekeeping: one run's local leftovers (images, smoke-test containers, run folders) and the weekly cleanup
of S3 model versions. The decisions are oncology_pipeline.housekeeping's and the S3 calls
oncology_pipeline.modelstore's; here they are run, logged and reported."""

from __future__ import annotations

import shutil

import docker
import requests
from botocore.exceptions import BotoCoreError, ClientError
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError

from oncology_pipeline import housekeeping, layout, localimages, modelstore, releases
from oncology_pipeline.errors import PipelineError
from oncology_pipeline.housekeeping import Decision, Tidied
from oncology_pipeline.reports import cleanup_description, cleanup_rows
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client, docker_client
from tasks.policy import NETWORK_RETRIES

#: A smoke test never runs longer than its time limit plus this (its request timeouts and removal).
SMOKE_TEST_MARGIN_SECONDS = 60


@task(name="tidy_local", cache_policy=NO_CACHE)
def tidy_local(settings: PipelineSettings, version: str) -> Tidied:
    """Keep the local images and run folders of production, of this run and of the newest others; remove
    smoke-test containers a killed run left. Never fails the run: what it cannot do is a warning."""
    log = get_run_logger()
    try:
        pointer = modelstore.read_pointer(aws_client(settings, "s3"), settings.model_bucket, settings.model_prefix)
    except (PipelineError, BotoCoreError, ClientError) as exc:
        log.warning("housekeeping skipped: cannot tell the production version (%s)", exc)
        return Tidied()
    protected = {version: "this run"} | ({pointer.model_version: "production"} if pointer else {})

    runs = settings.work_dir / "runs"
    names = [p.name for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else []
    run_dirs = []
    for name in housekeeping.stale(names, settings.keep_run_dirs, protected):
        try:
            shutil.rmtree(runs / name)
        except OSError as exc:
            log.warning("run folder %s not removed: %s", runs / name, exc)
            continue
        run_dirs.append(name)
        log.info("removed run folder %s", runs / name)

    try:
        with docker_client(settings) as client:
            tags = localimages.pipeline_tags(client, settings.ecr_repository)
            old = set(housekeeping.stale({t.version for t in tags}, settings.keep_local_versions, protected))
            images = localimages.remove_tags(client, [t for t in tags if t.version in old])
            containers = localimages.remove_smoke_containers(
                client, settings.ecr_repository, settings.smoke_test_timeout_seconds + SMOKE_TEST_MARGIN_SECONDS
            )
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        log.warning("local images not pruned: the Docker engine did not answer (%s)", exc)
        return Tidied(run_dirs=run_dirs)
    for reference in images:
        log.info("removed image tag %s", reference)
    for container in containers:
        log.info("removed leftover smoke-test container %s", container[:12])
    return Tidied(images=images, containers=containers, run_dirs=run_dirs)


@task(name="plan_cleanup", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def plan_cleanup(settings: PipelineSettings) -> list[Decision]:
    """Every stored model version, newest first, with what the cleanup does to it and why: production, its
    previous version, every version ever promoted and the newest `keep_candidates` others stay."""
    s3 = aws_client(settings, "s3")
    versions = modelstore.stored_versions(s3, settings.model_bucket, settings.model_prefix)
    pointer = modelstore.read_pointer(s3, settings.model_bucket, settings.model_prefix)
    promoted, unreadable = [], []
    for version in versions:
        try:
            record = releases.read_record(s3, settings.model_bucket, version)
        except ValidationError:
            unreadable.append(version)
            continue
        if record is not None and (record.promoted_at or record.production or record.promoting):
            promoted.append(version)
    protected = housekeeping.rollback_protection(
        pointer.model_version if pointer else None, pointer.previous_version if pointer else None, promoted, unreadable
    )
    return housekeeping.decide(versions, settings.keep_candidates, protected)


@task(name="delete_model_versions", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def delete_model_versions(settings: PipelineSettings, versions: list[str]) -> list[str]:
    """Delete the model files of `versions` (their release records stay); the production pointer is read again
    right before each one, and a version that became production or its previous version meanwhile is kept.
    Returns the versions deleted."""
    s3 = aws_client(settings, "s3")
    log = get_run_logger()
    deleted = []
    for version in versions:
        pointer = modelstore.read_pointer(s3, settings.model_bucket, settings.model_prefix)
        if pointer is not None and version in (pointer.model_version, pointer.previous_version):
            log.warning("kept %s: it became production (or production's previous version) meanwhile", version)
            continue
        count = modelstore.delete_version(s3, settings.model_bucket, settings.model_prefix, version)
        log.info("deleted %s/ (%d objects)", _version_uri(settings, version), count)
        deleted.append(version)
    return deleted


@task(name="report_cleanup", cache_policy=NO_CACHE)
def report_cleanup(settings: PipelineSettings, decisions: list[Decision], deleted: list[str], dry_run: bool) -> None:
    """The `model-cleanup` table artifact and one log line per version: kept, deleted or (dry run) would be."""
    rows = cleanup_rows(decisions, deleted, dry_run)
    where = layout.uri(settings.model_bucket, settings.model_prefix)
    create_table_artifact(table=rows, key="model-cleanup", description=cleanup_description(where, dry_run))
    log = get_run_logger()
    for row in rows:
        log.info("%s/: %s (%s)", _version_uri(settings, row["version"]), row["model files"], row["reason"])
    if not rows:
        log.info("%s/ holds no model versions", where)


def _version_uri(settings: PipelineSettings, version: str) -> str:
    """`s3://<model-bucket>/<model-prefix>/<version>`: where a model version's files are."""
    return layout.uri(settings.model_bucket, layout.version_prefix(settings.model_prefix, version))
