"""Housekeeping under a real Prefect server: the weekly `cleanup` flow against moto-backed buckets, and each
run's `tidy_local` against the real Docker engine. Whatever goes, everything a rollback needs stays."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest
from prefect import flow
from prefect.client.schemas.objects import StateType

from flows.cleanup import cleanup
from oncology_pipeline import layout, modelstore, releases, s3store
from oncology_pipeline.housekeeping import Tidied
from oncology_pipeline.image import MODEL_VERSION_LABEL
from oncology_pipeline.localimages import pipeline_tags
from oncology_pipeline.settings import PipelineSettings
from oncology_pipeline.smoketest import SMOKE_TEST_LABEL
from tasks.housekeeping import delete_model_versions, tidy_local
from tests.support import docker_env
from tests.support.invariant import seed_production, snapshot
from tests.support.prefect_runs import artifacts
from tests.support.stacks import Stack

V0, V1, V2, V3, V4, V5, V6, V7 = (f"2026110{day}T020000Z-c1ea000{day}" for day in range(8))
IMAGE = "127.0.0.1:5000/oncology-webservice@sha256:"


def _bundle(root: Path, version: str) -> Path:
    """A stand-in bundle: what seed_production and the cleanup look at (names, the metadata's version)."""
    bundle = root / version
    bundle.mkdir(parents=True)
    (bundle / "metadata.json").write_text(json.dumps({"model_version": version}))
    (bundle / "model.skops").write_bytes(f"model {version}".encode())
    return bundle


def _promoted(s3: Any, settings: PipelineSettings, version: str, superseded_by: str | None) -> None:
    """Say in the record what promote_model says: when the version became production, and whether it still is."""
    record = releases.read_record(s3, settings.model_bucket, version)
    assert record is not None
    changes = {
        "promoted_at": [datetime.now(UTC).isoformat()],
        "production": superseded_by is None,
        "superseded_by": superseded_by,
    }
    releases.write_record(s3, settings.model_bucket, releases.merge(record, changes))


@pytest.fixture
def history(stack: Stack, tmp_path: Path) -> dict[str, str]:
    """Eight versions and a folder that is not one. V1 and V4 were production, V5 is (its previous: V4); V2 and
    V6 are candidates with records, V3 one without; V0's record is unreadable; V7 is the newest candidate."""
    s3, settings = stack.s3, stack.settings
    for version in (V1, V4, V5):
        seed_production(s3, settings, _bundle(tmp_path, version), IMAGE + version[-1] * 64)
    _promoted(s3, settings, V1, superseded_by=V4)
    _promoted(s3, settings, V4, superseded_by=V5)
    _promoted(s3, settings, V5, superseded_by=None)
    for version in (V0, V2, V3, V6, V7):
        s3store.upload_directory(
            s3, settings.model_bucket, f"{settings.model_prefix}/{version}", _bundle(tmp_path, version)
        )
        if version != V3:
            releases.write_record(s3, settings.model_bucket, releases.ReleaseRecord(model_version=version))
    s3store.put_bytes(s3, settings.model_bucket, layout.release_key(V0), b"{not json", "application/json")
    s3store.put_bytes(s3, settings.model_bucket, f"{settings.model_prefix}/notes/README", b"kept", "text/plain")
    return {**stack.overrides, "keep_candidates": 2}


@flow(name="tidy-local-test")
def _tidy(settings: PipelineSettings, version: str) -> Tidied:
    """tidy_local as the pipeline calls it: a task of a flow run."""
    return tidy_local(settings, version)


@flow(name="delete-model-versions-test")
def _delete(settings: PipelineSettings, versions: list[str]) -> list[str]:
    return delete_model_versions(settings, versions)


def _model_files(s3: Any, settings: PipelineSettings, version: str) -> set[str]:
    prefix = f"{settings.model_prefix}/{version}/"
    return {k for k in snapshot(s3, settings.model_bucket) if k.startswith(prefix)}


def _assert_rollback_possible(stack: Stack) -> None:
    """Production, its previous version and every version ever promoted: bundle, release record, image."""
    s3, settings = stack.s3, stack.settings
    pointer = modelstore.read_pointer(s3, settings.model_bucket, settings.model_prefix)
    assert pointer is not None and (pointer.model_version, pointer.previous_version) == (V5, V4)
    for version in (V1, V4, V5):
        keys = modelstore.version_keys(s3, settings.model_bucket, settings.model_prefix, version)
        assert {k.rsplit("/", 1)[-1] for k in keys} == {"model.skops", "metadata.json"}
        fetched = modelstore.fetch_bundle(
            s3, settings.model_bucket, settings.model_prefix, settings.work_dir / "check", version
        )
        assert fetched is not None and (fetched[1] / "model.skops").read_bytes() == f"model {version}".encode()
        record = releases.read_record(s3, settings.model_bucket, version)
        assert record is not None and record.promoted_at and record.image.reference == IMAGE + version[-1] * 64


def test_a_dry_run_lists_what_it_would_delete_and_deletes_nothing(stack: Stack, history: dict[str, Any]) -> None:
    before = snapshot(stack.s3, stack.settings.model_bucket)
    state = cleanup(overrides=history, return_state=True)
    assert state.type is StateType.COMPLETED, state.message
    assert state.result() == [V3, V2]
    assert snapshot(stack.s3, stack.settings.model_bucket) == before
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    (table,) = [a for a in artifacts(run_id) if a.key == "model-cleanup"]
    rows = {row["version"]: (row["model files"], row["reason"]) for row in json.loads(table.data)}
    assert rows == {
        "notes": ("keep", "not a pipeline version"),
        V7: ("keep", "among the newest 2"),
        V6: ("keep", "among the newest 2"),
        V5: ("keep", "production"),
        V4: ("keep", "production's previous version: kept for rollback"),
        V3: ("would delete", "older than the newest 2"),
        V2: ("would delete", "older than the newest 2"),
        V1: ("keep", "was production: kept for rollback"),
        V0: ("keep", "release record unreadable: kept to be safe"),
    }


def test_a_real_run_deletes_exactly_the_unneeded_model_files_and_keeps_their_records(
    stack: Stack, history: dict[str, Any]
) -> None:
    before = snapshot(stack.s3, stack.settings.model_bucket)
    gone = _model_files(stack.s3, stack.settings, V2) | _model_files(stack.s3, stack.settings, V3)
    assert len(gone) == 4
    state = cleanup(dry_run=False, overrides=history, return_state=True)
    assert state.type is StateType.COMPLETED, state.message
    assert state.result() == [V3, V2]
    after = snapshot(stack.s3, stack.settings.model_bucket)
    assert set(before) - set(after) == gone
    assert after == {key: etag for key, etag in before.items() if key not in gone}  # nothing else touched
    assert layout.release_key(V2) in after  # the history stays
    _assert_rollback_possible(stack)

    again = cleanup(dry_run=False, overrides=history, return_state=True)
    assert again.result() == [] and snapshot(stack.s3, stack.settings.model_bucket) == after


def test_a_version_promoted_after_the_plan_is_not_deleted(stack: Stack, history: dict[str, Any]) -> None:
    settings = stack.settings
    planned = [V3, V2]  # what the plan said before V2 was released
    seed_production(stack.s3, settings, _bundle(settings.work_dir, V2), IMAGE + "2" * 64)
    assert _delete(settings, planned) == [V3]
    assert _model_files(stack.s3, settings, V3) == set()
    assert len(_model_files(stack.s3, settings, V2)) == 2


# --- local housekeeping after each run: real Docker engine ----------------------------------------------------

RUN, OLD = "20261130T020000Z-c1ea0009", "20261101T020000Z-c1ea000f"


@pytest.fixture
def local_runs(stack: Stack, docker_client: Any) -> Iterator[tuple[PipelineSettings, dict[str, Any]]]:
    """Production V5 in S3. Local images (each with its build tag and its registry tag) of V1..V7 and this run,
    V2's in use by a container; foreign images; run folders of every version; a young smoke-test container."""
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    seed_production(stack.s3, stack.settings, _bundle(stack.settings.work_dir / "bundles", V5), IMAGE + "5" * 64)
    repository = f"oncology-housekeeping-{uuid.uuid4().hex[:8]}"
    settings = stack.settings.with_overrides(
        {"ecr_repository": repository, "keep_local_versions": 2, "keep_run_dirs": 2}
    )
    made: list[str] = []
    containers: list[Any] = []

    def build(reference: str, label: str | None) -> str:
        dockerfile = f"FROM {docker_env.BASE_IMAGE}\nLABEL test.reference={reference}\n"
        if label is not None:
            dockerfile += f"LABEL {MODEL_VERSION_LABEL}={label}\n"
        image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=reference, rm=True)
        made.append(str(image.id))
        return str(image.id)

    for version in (V1, V2, V3, V4, V5, V6, V7, RUN):
        build(f"{repository}:{version}", version)
        docker_client.api.tag(f"{repository}:{version}", f"127.0.0.1:5000/{repository}", version)
    foreign = {
        f"foreign-{repository}:{OLD}": build(f"foreign-{repository}:{OLD}", OLD),  # labelled, another repository
        f"{repository}:{OLD}": build(f"{repository}:{OLD}", None),  # our repository, not labelled: not ours
        f"{repository}:keep-me": build(f"{repository}:keep-me", V1),  # labelled, not a version tag
    }
    containers.append(docker_client.containers.create(f"{repository}:{V2}", ["true"]))
    containers.append(
        docker_client.containers.create(f"{repository}:{V7}", ["true"], labels={SMOKE_TEST_LABEL: "true"})
    )
    runs = settings.work_dir / "runs"
    for name in (V1, V2, V3, V4, V5, V6, V7, RUN, "scratch"):
        (runs / name).mkdir(parents=True)
        (runs / name / "summary.json").write_text("{}")
    try:
        yield settings, {"foreign": foreign, "containers": containers}
    finally:
        for container in containers:
            container.remove(force=True)
        for image_id in made:
            try:
                docker_client.images.remove(image_id, force=True)
            except docker.errors.NotFound:
                continue


def test_tidy_local_keeps_production_this_run_and_the_newest_and_removes_older_pipeline_images(
    local_runs: tuple[PipelineSettings, dict[str, Any]], docker_client: Any
) -> None:
    settings, made = local_runs
    repository = settings.ecr_repository
    tidied = _tidy(settings, RUN)

    removed = {f"{name}:{v}" for v in (V1, V3, V4) for name in (repository, f"127.0.0.1:5000/{repository}")}
    assert set(tidied.images) == removed and len(tidied.images) == 6
    assert {tag.version for tag in pipeline_tags(docker_client, repository)} == {RUN, V7, V6, V5, V2}
    for reference in removed:
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(reference)
    for reference, image_id in made["foreign"].items():
        assert docker_client.images.get(reference).id == image_id
    assert docker_client.images.get(docker_env.BASE_IMAGE)  # the base image of them all
    assert tidied.containers == []  # the smoke-test container is young: a smoke test may still use it
    for container in made["containers"]:
        container.reload()  # still there (NotFound otherwise)
    assert sorted(tidied.run_dirs) == [V1, V2, V3, V4]
    runs = settings.work_dir / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted([RUN, V7, V6, V5, "scratch"])


def test_tidy_local_without_docker_still_tidies_the_run_folders(
    local_runs: tuple[PipelineSettings, dict[str, Any]], docker_client: Any
) -> None:
    settings, _ = local_runs
    settings = settings.with_overrides({"docker_host": "unix:///nonexistent/docker.sock"})
    start = time.monotonic()
    assert _tidy(settings, RUN) == Tidied(run_dirs=[V4, V3, V2, V1])
    assert time.monotonic() - start < 30
    assert len(pipeline_tags(docker_client, settings.ecr_repository)) == 16  # every image tag still there


def test_tidy_local_deletes_nothing_when_production_is_unknown(
    local_runs: tuple[PipelineSettings, dict[str, Any]], docker_client: Any
) -> None:
    settings, _ = local_runs
    settings = settings.with_overrides({"model_bucket": f"missing-{uuid.uuid4().hex[:8]}"})
    assert _tidy(settings, RUN) == Tidied()
    assert len(pipeline_tags(docker_client, settings.ecr_repository)) == 16
    assert len(list((settings.work_dir / "runs").iterdir())) == 9
