"""Before training: the night's inputs as one fingerprint, and what the run must do about them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import docker
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from oncology_pipeline import fingerprint, modelstore, registry, releases, s3store
from oncology_pipeline.errors import ConfigurationError
from oncology_pipeline.fingerprint import Fingerprint, Plan
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client, docker_client
from tasks.policy import NETWORK_RETRIES


def _base_image(settings: PipelineSettings) -> str:
    """The base image reference, with its image id when the engine has it (a re-pulled tag changes the id)."""
    try:
        with docker_client(settings) as client:
            return f"{settings.base_image}@{client.images.get(settings.base_image).id}"
    except docker.errors.DockerException:
        return settings.base_image


@task(name="fingerprint_inputs", cache_policy=NO_CACHE)
def fingerprint_inputs(
    settings: PipelineSettings, data: s3store.CachedDownload, labelled: list[s3store.CachedDownload]
) -> Fingerprint:
    """The data (training CSV and labelled files: ETag, sha256), the model settings, the code and lock, and the
    base image, hashed."""
    project = Path.cwd()
    found = Fingerprint(
        data_uri=data.source.uri,
        data_etag=data.source.etag,
        data_sha256=fingerprint.file_sha256(data.path),
        labelled_data=fingerprint.data_files(labelled),
        config_sha256=fingerprint.config_sha256(settings.model_inputs()),
        code_sha256=fingerprint.code_sha256(project),
        lock_sha256=releases.lock_sha256(project),
        base_image=_base_image(settings),
        target=settings.deploy_target(),
    )
    get_run_logger().info("inputs fingerprint %s (%d labelled files)", found.digest[:12], len(labelled))
    return found


@task(name="plan_run", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def plan_run(settings: PipelineSettings, inputs: Fingerprint, force: bool) -> Plan:
    """No change, resume an earlier run with these inputs, or run everything (see fingerprint.plan_run)."""
    s3 = aws_client(settings, "s3")
    pointer = modelstore.read_pointer(s3, settings.model_bucket, settings.model_prefix)
    production = releases.read_record(s3, settings.model_bucket, pointer.model_version) if pointer else None
    earlier = releases.latest_with_fingerprint(s3, settings.model_bucket, inputs.digest)
    pinned = production.pinned if production is not None else None
    replaced = releases.read_record(s3, settings.model_bucket, pinned.replaced) if pinned and pinned.replaced else None
    plan = fingerprint.plan_run(inputs, production, earlier, force, replaced)
    if plan.action == "resume" and plan.version:
        try:
            modelstore.version_keys(s3, settings.model_bucket, settings.model_prefix, plan.version)
        except ConfigurationError:  # the weekly cleanup deleted it, or its upload was broken off
            plan = Plan(
                "full", f"{plan.version} had these inputs, but its model files are not all there: training again"
            )
    if plan.action == "resume" and plan.image:
        credentials = registry.ecr_login(aws_client(settings, "ecr"), settings.registry_address)
        if not registry.holds_image(plan.image, credentials):
            plan = replace(
                plan, image=None, reason=f"{plan.reason}; its image is gone from the registry: publishing again"
            )
    get_run_logger().info("%s: %s", plan.action, plan.reason)
    return plan


@task(name="remember_fingerprint", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def remember_fingerprint(settings: PipelineSettings, inputs: Fingerprint, version: str) -> None:
    """Point the fingerprint's index entry at `version`, so a later run with these inputs finds it."""
    releases.remember_fingerprint(aws_client(settings, "s3"), settings.model_bucket, inputs.digest, version)


@task(name="report_no_change", cache_policy=NO_CACHE)
def report_no_change(plan: Plan, inputs: Fingerprint, drifted: str | None = None) -> str:
    """The `no-change` artifact: which version keeps serving and why nothing ran (the inputs are production's, or
    the version made from them is held back); `drifted`: what the run did about a cluster that did not serve
    production as recorded (then this night was not "no change")."""
    done = "Nothing was"
    if plan.action == "held":
        headline = f"Held: {plan.version} is not released again"
    elif drifted is None:
        headline = f"No change: {plan.version} stays in production"
    else:
        headline = f"No change in the inputs, but the cluster drifted from production {plan.version}"
    if drifted is not None:
        done = f"The cluster did not serve production as recorded (`reconcile` artifact): {drifted}.\n\nNothing was"
    text = (
        f"# {headline}\n\n{plan.reason}.\n\n"
        f"{done} retrained, tested, built or pushed, and no new version deployed. Run with `force=true` to release "
        "anyway:\n\n"
        "```bash\nprefect deployment run 'train-test-publish-deploy/nightly' --param force=true\n```\n\n"
        "| input | value |\n|---|---|\n"
        f"| data | `{inputs.data_uri}` |\n"
        f"| data ETag, sha256 | `{inputs.data_etag.strip(chr(34))}`, `{inputs.data_sha256[:12]}` |\n"
        f"| labelled cases | {_labelled(inputs)} |\n"
        f"| settings | sha256 `{inputs.config_sha256[:12]}` |\n"
        f"| code (oncology_model, Dockerfile, build context) | sha256 `{inputs.code_sha256[:12]}` |\n"
        f"| dependency lock (uv.lock) | sha256 `{(inputs.lock_sha256 or '-')[:12]}` |\n"
        f"| base image | `{inputs.base_image}` |\n"
        f"| deploy target | {_target(inputs)} |\n"
    )
    create_markdown_artifact(markdown=text, key="no-change", description=headline)
    if plan.action == "held":
        return f"{headline}: {plan.reason}"
    return f"no change: {plan.version} stays in production" if drifted is None else f"{headline}: {drifted}"


def _target(inputs: Fingerprint) -> str:
    """The deploy target in one table cell."""
    return ", ".join(f"{name} `{value}`" for name, value in inputs.target.items() if value) or "-"


def _labelled(inputs: Fingerprint) -> str:
    """The labelled files of the fingerprint in one table cell: how many, and the last by key."""
    files = inputs.labelled_data
    return f"{len(files)} files, the last `{files[-1].uri}`" if files else "none"
