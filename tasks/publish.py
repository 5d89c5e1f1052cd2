"""Publish stage: build the web-service image with the approved model, smoke-test it, push it to ECR by digest."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from oncology_model import __version__
from oncology_model.bundle import git_revision, read_metadata
from oncology_model.classifier import Classifier
from oncology_model.datamodel import EXAMPLE_MALIGNANT, Tumor
from oncology_pipeline import buildcontext, image, registry, smoketest
from oncology_pipeline.cluster import pin_image
from oncology_pipeline.reports import image_markdown
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client, docker_client
from tasks.policy import NETWORK_RETRIES


@task(name="build_image", cache_policy=NO_CACHE)
def build_image(settings: PipelineSettings, bundle_dir: Path, version: str) -> image.ImageInfo:
    """Build the multi-stage Dockerfile offline (a wheelhouse from the lock) with the bundle as the last layer,
    stopped with BuildFailed after `build_timeout_seconds`."""
    log = get_run_logger()
    start = time.perf_counter()
    context = buildcontext.prepare_build_context(Path.cwd(), bundle_dir, settings.run_dir(version) / "image-context")
    log.info("build context ready in %.1f s: %s", time.perf_counter() - start, context)
    build_args = {
        "BASE_IMAGE": settings.base_image,
        "VERSION": __version__,
        "MODEL_VERSION": read_metadata(bundle_dir).model_version,
        "REVISION": git_revision() or "unknown",
    }
    build_log = settings.run_dir(version) / "image-build.log"
    lines: list[str] = []
    with build_log.open("w") as file, docker_client(settings) as client:

        def record(line: str) -> None:  # the whole build output to the file; the task log gets a summary
            file.write(line + "\n")
            lines.append(line)

        info = image.build_image(
            client,
            context,
            f"{settings.ecr_repository}:{version}",
            build_args,
            record,
            timeout=settings.build_timeout_seconds,
        )
    steps = sum(line.startswith("Step ") for line in lines)
    cached = sum("Using cache" in line for line in lines)
    log.info(
        "built %s (%s, %.1f MB) in %.1f s: %d steps, %d from the layer cache; build log %s",
        info.tag,
        info.id[:19],
        info.size / 1e6,
        time.perf_counter() - start,
        steps,
        cached,
        build_log,
    )
    return info


@task(name="smoke_test_image", cache_policy=NO_CACHE)
def smoke_test_image(settings: PipelineSettings, info: image.ImageInfo, bundle_dir: Path) -> smoketest.SmokeResult:
    """Run the image, wait for /readyz, and check one real prediction against the bundle's own answer."""
    tumor = Tumor(**EXAMPLE_MALIGNANT)
    prediction, probability = Classifier.from_bundle(bundle_dir).predict(tumor)
    expected = {"prediction": prediction.value, "probability_malignant": probability}
    with docker_client(settings) as client:
        result = smoketest.smoke_test_image(
            client,
            info.tag,
            bundle_dir,
            tumor.model_dump(),
            expected,
            settings.smoke_test_timeout_seconds,
        )
    get_run_logger().info("smoke test passed: %s", result)
    return result


@task(name="ecr_login", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def ecr_login(settings: PipelineSettings) -> registry.RegistryCredentials:
    """An ECR token from boto3, decoded into registry credentials (never logged)."""
    credentials = registry.ecr_login(aws_client(settings, "ecr"), settings.registry_address)
    get_run_logger().info("logged in to %s as %s", credentials.registry, credentials.username)
    return credentials


@task(name="ensure_repository", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def ensure_repository(settings: PipelineSettings) -> str:
    """The ECR repository's URI, created with scan-on-push and immutable tags when missing."""
    uri = registry.ensure_repository(aws_client(settings, "ecr"), settings.ecr_repository)
    get_run_logger().info("repository %s", uri)
    return uri


@task(name="push_image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def push_image(
    settings: PipelineSettings,
    info: image.ImageInfo,
    credentials: registry.RegistryCredentials,
    repository_uri: str,
    version: str,
) -> str:
    """Push the image tagged with the pipeline version; returns it pinned by digest (`...@sha256:...`)."""
    log = get_run_logger()
    repository = registry.repository_reference(credentials, repository_uri)
    with docker_client(settings) as client:
        digest = registry.push_image(client, repository, version, credentials, log.info, info.id)
    pinned = pin_image(repository, digest)
    log.info("pushed %s:%s as %s", repository, version, pinned)
    return pinned


@task(name="report_image", cache_policy=NO_CACHE)
def report_image(pinned: str, info: image.ImageInfo, smoke: smoketest.SmokeResult) -> None:
    """The published image for the UI: reference by digest, size, labels, smoke-test result."""
    create_markdown_artifact(
        markdown=image_markdown(pinned, info, smoke), key="published-image", description="The published image"
    )
