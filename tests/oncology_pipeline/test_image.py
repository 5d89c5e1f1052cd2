"""The serving image: build context, a real build, what the image holds, and the smoke test."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest

from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT
from oncology_pipeline import buildcontext
from oncology_pipeline.buildcontext import dependency_wheelhouse, prepare_build_context
from oncology_pipeline.errors import BuildFailed, ConfigurationError, SmokeTestFailed
from oncology_pipeline.image import MODEL_VERSION_LABEL, build_image
from oncology_pipeline.localimages import remove_smoke_containers
from oncology_pipeline.smoketest import SMOKE_TEST_LABEL, smoke_test_image
from tests.support import docker_env
from tests.support.docker_env import BuiltImage
from tests.support.paths import PROJECT_DIR

PIPELINE_ONLY = ("prefect", "docker", "kubernetes", "pytest", "moto")

#: One worker runs this module: its smoke tests count the smoke-test containers of the session's image, which is
#: shared by every worker of the run.
pytestmark = pytest.mark.xdist_group("serving-image")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _project(name: str) -> str:
    """A distribution name as wheel file names spell it."""
    return name.replace("-", "_").lower()


# --- build context -----------------------------------------------------------------------------


def test_build_context_holds_dockerfile_runtime_wheels_and_the_bundle(
    build_context: Path, model_bundle_dir: Path
) -> None:
    assert (build_context / "Dockerfile").read_text() == (PROJECT_DIR / "Dockerfile").read_text()
    assert (build_context / ".dockerignore").is_file()
    wheels = sorted(p.name for p in (build_context / "wheels").iterdir())
    dists = {name.split("-")[0].lower() for name in wheels if name.endswith(".whl")}
    assert {"numpy", "scikit_learn", "skops", "fastapi", "uvicorn", "pydantic", "pydantic_settings", "boto3"} <= dists
    assert "oncology_mlops" in dists
    assert not dists & {_project(name) for name in PIPELINE_ONLY}
    assert all("cp311" in name or "py3-none-any" in name or "abi3" in name for name in wheels if name.endswith(".whl"))
    requirements = (build_context / "wheels" / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("skops==") for line in requirements)
    assert all("==" in line and ";" not in line for line in requirements), "pinned, markers resolved for 3.11"
    for name in ("model.skops", "metadata.json"):
        copied = build_context / "model" / name
        assert _sha256(copied) == _sha256(model_bundle_dir / name)
        assert copied.stat().st_mode & 0o044 == 0o044, f"{name} must be readable by the image's non-root user"


def test_a_new_model_reuses_the_cached_wheelhouse(
    build_context: Path, model_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*_: object) -> None:
        raise AssertionError("a model-only change must not download wheels again")

    monkeypatch.setattr(buildcontext, "_download_wheels", no_download)
    other_bundle = tmp_path / "bundle"
    shutil.copytree(model_bundle_dir, other_bundle)
    (other_bundle / "metadata.json").write_text((model_bundle_dir / "metadata.json").read_text() + "\n")
    context = prepare_build_context(PROJECT_DIR, other_bundle, tmp_path / "context")
    wheelhouse = dependency_wheelhouse(PROJECT_DIR)
    for wheel in wheelhouse.iterdir():
        assert (context / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    assert (context / "model" / "metadata.json").read_bytes() != (
        build_context / "model" / "metadata.json"
    ).read_bytes()


def test_a_directory_without_a_bundle_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "not-a-bundle").mkdir()
    (tmp_path / "not-a-bundle" / "metadata.json").write_text("{}")
    with pytest.raises(ConfigurationError, match=r"model\.skops missing"):
        prepare_build_context(PROJECT_DIR, tmp_path / "not-a-bundle", tmp_path / "out" / "context")
    assert not (tmp_path / "out").exists()


def test_a_failure_half_way_leaves_no_context(
    model_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = buildcontext._run

    def failing_build(command: list[str], cwd: Path, what: str) -> str:
        if Path(command[0]).name == "uv" and command[1] == "build":
            raise BuildFailed("uv build broke")
        return real_run(command, cwd, what)

    monkeypatch.setattr(buildcontext, "_run", failing_build)
    with pytest.raises(BuildFailed, match="uv build broke"):
        prepare_build_context(PROJECT_DIR, model_bundle_dir, tmp_path / "context")
    assert list(tmp_path.iterdir()) == []


# --- build ---------------------------------------------------------------------------------------


def test_the_image_is_labelled_and_configured(
    built_image: BuiltImage, docker_client: Any, model_bundle_dir: Path
) -> None:
    info = built_image.info
    assert info.id.startswith("sha256:")
    assert info.size > 0
    metadata = (model_bundle_dir / "metadata.json").read_text()
    assert info.labels[MODEL_VERSION_LABEL] in metadata
    assert info.labels[MODEL_VERSION_LABEL] == "20261125T000000Z-7e570001"
    assert info.labels["org.opencontainers.image.version"] == "0.1.0"
    assert info.labels["org.opencontainers.image.revision"] == "0123456789abcdef0123456789abcdef01234567"
    config = docker_client.images.get(info.id).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert config["Cmd"] == [
        "python", "-m", "oncology_model", "serve", "--model", "/opt/model", "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    assert any(line.startswith("Successfully built") for line in built_image.build_log)


def test_the_image_holds_runtime_dependencies_only(built_image: BuiltImage, docker_client: Any) -> None:
    probe = (
        "import importlib.util as u; "
        f"print(' '.join(m for m in {[*PIPELINE_ONLY, 'pip', 'boto3', 'oncology_model', 'sklearn', 'skops']!r} "
        "if u.find_spec(m)))"
    )
    found = docker_client.containers.run(built_image.info.id, ["python", "-c", probe], remove=True, read_only=True)
    assert found.decode().split() == ["boto3", "oncology_model", "sklearn", "skops"]  # boto3: the prediction log
    assert b"curl" not in docker_client.containers.run(
        built_image.info.id, ["sh", "-c", "command -v curl || echo none"], remove=True
    )


def test_the_image_serves_as_non_root_on_a_read_only_root_and_is_healthy(
    built_image: BuiltImage, docker_client: Any
) -> None:
    health = docker_client.images.get(built_image.info.id).attrs["Config"]["Healthcheck"]["Test"]
    assert health[0] == "CMD"
    container = docker_client.containers.run(built_image.info.id, detach=True, read_only=True)
    try:
        deadline = time.monotonic() + 60
        while (result := container.exec_run(health[1:])).exit_code != 0:
            assert time.monotonic() < deadline, f"HEALTHCHECK never passed: {result.output!r}"
            time.sleep(0.5)
        server = [p for p in container.top(ps_args="-o pid,uid,args")["Processes"] if "oncology_model" in p[-1]]
        assert [p[1] for p in server] == ["10001"]
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "10001"
        assert container.exec_run(["touch", "/opt/model/x"]).exit_code != 0
        assert container.exec_run(["touch", "/tmp/x"]).exit_code != 0, "the root file system must be read-only"
    finally:
        container.remove(force=True)


def test_no_build_secret_reaches_the_final_image(built_image: BuiltImage, docker_client: Any) -> None:
    secret = built_image.secret.encode()
    history = docker_client.api.history(built_image.info.id)
    assert secret.decode() not in repr(history)
    assert not any(secret.decode() in line for line in built_image.build_log)
    searched = 0
    known = b'"model_version": "20261125T000000Z-7e570001"'
    seen_known = False
    for name, content in docker_env.image_files(docker_client, built_image.info.id):
        searched += 1
        assert secret not in content, f"the build secret is in {name}"
        assert secret not in name.encode()
        seen_known = seen_known or known in content
    assert seen_known, "the search must find what the image does hold (the bundle's metadata)"
    # Control: the secret did reach the builder stage, whose history the classic builder keeps locally.
    assert docker_env.builder_images_with(docker_client, built_image.secret)
    assert searched > 1000


def test_a_broken_dockerfile_raises_build_failed_with_its_output(docker_client: Any, tmp_path: Path) -> None:
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    (tmp_path / "Dockerfile").write_text(f"FROM {docker_env.BASE_IMAGE}\nRUN echo about-to-fail-7f3a && exit 3\n")
    log: list[str] = []
    with pytest.raises(BuildFailed) as failure:
        build_image(docker_client, tmp_path, "oncology-model-test:broken", {}, log.append)
    assert "returned a non-zero code: 3" in str(failure.value)
    assert "about-to-fail-7f3a" in str(failure.value)
    assert "about-to-fail-7f3a" in log


# --- smoke test ---------------------------------------------------------------------------------


def _smoke_containers(docker_client: Any, image_id: str) -> list[Any]:
    return [
        c
        for c in docker_client.containers.list(all=True, filters={"label": SMOKE_TEST_LABEL})
        if c.image.id == image_id
    ]


def test_the_image_serves_the_bundles_answer(
    built_image: BuiltImage, docker_client: Any, model_bundle_dir: Path, benign_answer: dict[str, Any]
) -> None:
    result = smoke_test_image(
        docker_client, built_image.info.id, model_bundle_dir, EXAMPLE_BENIGN, benign_answer, timeout=90
    )
    assert result.response["prediction"] == benign_answer["prediction"] == "benign"
    assert result.response["probability_malignant"] == pytest.approx(benign_answer["probability_malignant"], abs=1e-9)
    assert result.response["model_version"] == "20261125T000000Z-7e570001"
    assert 0 < result.ready_seconds < 90
    assert _smoke_containers(docker_client, built_image.info.id) == []


def test_a_wrong_answer_fails_the_smoke_test_and_leaves_no_container(
    built_image: BuiltImage, docker_client: Any, model_bundle_dir: Path, benign_answer: dict[str, Any]
) -> None:
    wrong = {**benign_answer, "prediction": "malignant"}
    with pytest.raises(SmokeTestFailed, match=r"prediction 'benign' != expected 'malignant'") as failure:
        smoke_test_image(docker_client, built_image.info.id, model_bundle_dir, EXAMPLE_BENIGN, wrong, timeout=90)
    assert "Uvicorn running" in str(failure.value) or "Application startup complete" in str(failure.value)
    assert _smoke_containers(docker_client, built_image.info.id) == []


def test_a_container_that_never_gets_ready_times_out_with_its_logs(
    docker_client: Any, model_bundle_dir: Path, tmp_path: Path
) -> None:
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    (tmp_path / "Dockerfile").write_text(
        f'FROM {docker_env.BASE_IMAGE}\nCMD ["sh", "-c", "echo never-ready-5c1e; sleep 600"]\n'
    )
    info = build_image(docker_client, tmp_path, "oncology-model-test:never-ready", {}, lambda _: None)
    try:
        with pytest.raises(SmokeTestFailed, match=r"not ready .* within 3 s") as failure:
            smoke_test_image(
                docker_client, info.id, model_bundle_dir, EXAMPLE_MALIGNANT, {"prediction": "malignant"}, timeout=3
            )
        assert "never-ready-5c1e" in str(failure.value)
        assert _smoke_containers(docker_client, info.id) == []
    finally:
        docker_client.images.remove(info.id, force=True)


# --- time limit, leftovers ----------------------------------------------------------------------------------


def _containers_running(docker_client: Any, marker: str) -> list[str]:
    return [c["Id"] for c in docker_client.api.containers(all=True) if marker in c["Command"]]


def test_a_build_over_the_time_limit_is_stopped_and_tags_nothing(docker_client: Any, tmp_path: Path) -> None:
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    marker = f"slow-step-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(f"FROM {docker_env.BASE_IMAGE}\nRUN echo {marker} && sleep 30\n")
    tag = f"oncology-model-test:timeout-{marker}"
    log: list[str] = []
    start = time.monotonic()
    with pytest.raises(BuildFailed, match=r"took longer than the limit of 3 s \(build_timeout_seconds\)") as failure:
        build_image(docker_client, tmp_path, tag, {}, log.append, timeout=3)
    assert 3 <= time.monotonic() - start < 10
    assert marker in str(failure.value) and marker in log  # the output shows the slow step
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    deadline = time.monotonic() + 15  # the daemon cancels the build: the step's container is killed and removed
    while _containers_running(docker_client, marker):
        assert time.monotonic() < deadline, "the daemon kept running the stopped build"
        time.sleep(0.5)


@pytest.mark.parametrize("tagged_before", [False, True], ids=["new-tag", "tag-existed"])
def test_a_tag_set_just_as_the_time_ran_out_is_undone(docker_client: Any, tmp_path: Path, tagged_before: bool) -> None:
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    marker = uuid.uuid4().hex[:8]
    (tmp_path / "Dockerfile").write_text(f"FROM {docker_env.BASE_IMAGE}\nLABEL test.marker={marker}\n")
    tag = f"oncology-model-test:late-{marker}"
    base_id = docker_client.images.get(docker_env.BASE_IMAGE).id
    if tagged_before:
        docker_client.api.tag(base_id, "oncology-model-test", f"late-{marker}")

    def slow_reader(line: str) -> None:  # the daemon finishes (and tags) while the output is still being read
        if line.startswith("Step 2/2"):
            time.sleep(3)

    try:
        with pytest.raises(BuildFailed, match=r"limit of 1 s"):
            build_image(docker_client, tmp_path, tag, {}, slow_reader, timeout=1)
        built = docker_client.images.list(filters={"label": f"test.marker={marker}"})
        assert built == [], "the finished image goes with its tag"
        if tagged_before:
            assert docker_client.images.get(tag).id == base_id
        else:
            with pytest.raises(docker.errors.ImageNotFound):
                docker_client.images.get(tag)
    finally:
        if tagged_before:
            docker_client.images.remove(tag)


def test_a_container_that_cannot_start_is_removed(
    docker_client: Any, model_bundle_dir: Path, tmp_path: Path, benign_answer: dict[str, Any]
) -> None:
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    (tmp_path / "Dockerfile").write_text(f'FROM {docker_env.BASE_IMAGE}\nCMD ["/no-such-program-9d1f"]\n')
    tag = f"oncology-model-test:no-start-{uuid.uuid4().hex[:8]}"
    info = build_image(docker_client, tmp_path, tag, {}, lambda _: None)
    try:
        with pytest.raises(SmokeTestFailed, match=r"cannot start a container of .*no-such-program-9d1f"):
            smoke_test_image(docker_client, info.tag, model_bundle_dir, EXAMPLE_BENIGN, benign_answer, timeout=5)
        assert _smoke_containers(docker_client, info.id) == []
    finally:
        docker_client.images.remove(info.id, force=True)


def test_only_old_smoke_test_containers_of_this_repository_are_swept(docker_client: Any, tmp_path: Path) -> None:
    docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
    repository = f"oncology-model-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(f"FROM {docker_env.BASE_IMAGE}\nLABEL test.repository={repository}\n")
    info = build_image(docker_client, tmp_path, f"{repository}:20261125T000000Z-5e1f0001", {}, lambda _: None)
    labels = {SMOKE_TEST_LABEL: "true"}
    ours = docker_client.containers.create(info.tag, ["true"], labels=labels)
    other = docker_client.containers.create(docker_env.BASE_IMAGE, ["true"], labels=labels)  # another repository's
    unlabelled = docker_client.containers.create(info.tag, ["true"])
    try:
        time.sleep(1.5)
        assert remove_smoke_containers(docker_client, repository, older_than=600) == []
        assert remove_smoke_containers(docker_client, repository, older_than=1) == [ours.id]
        with pytest.raises(docker.errors.NotFound):
            ours.reload()
        other.reload()
        unlabelled.reload()
    finally:
        for container in (ours, other, unlabelled):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        docker_client.images.remove(info.id, force=True)


@contextlib.contextmanager
def _logging_service(image: str, docker_client: Any, **settings: str) -> Iterator[tuple[Any, str, Any, str]]:
    """The image serving with its prediction log on (a new bucket on a moto server on the Docker bridge, as pods
    reach it; more ONCOLOGY_* `settings`): the container, its URL (ready), an S3 client of that server, the bucket."""
    import boto3

    from standins.aws import moto_server
    from standins.kube.dockerruntime import host_gateway_address

    with moto_server(address=host_gateway_address(docker_client)) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        bucket = f"logs-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        environment = {
            "ONCOLOGY_LOG_BUCKET": bucket,
            "AWS_ENDPOINT_URL_S3": f"http://host.docker.internal:{endpoint.rsplit(':', 1)[1]}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-central-1",
            **{f"ONCOLOGY_{name.upper()}": value for name, value in settings.items()},
        }
        container = docker_client.containers.run(
            image,
            detach=True,
            read_only=True,
            environment=environment,
            extra_hosts={"host.docker.internal": "host-gateway"},
            ports={"8000/tcp": ("127.0.0.1", None)},
        )
        try:
            container.reload()
            url = f"http://127.0.0.1:{container.ports['8000/tcp'][0]['HostPort']}"
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError):
                    if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:
                        break
                assert time.monotonic() < deadline, container.logs().decode()[-2000:]
                time.sleep(0.2)
            yield container, url, s3, bucket
        finally:
            container.remove(force=True)


def _predict(url: str, n: int) -> str:
    """One prediction with the request id `load-<n>`; the id the answer carries."""
    body = json.dumps(EXAMPLE_MALIGNANT if n % 2 else EXAMPLE_BENIGN).encode()
    headers = {"content-type": "application/json", "x-request-id": f"load-{n}"}
    request = urllib.request.Request(f"{url}/v1/predictions", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.headers["x-request-id"])


def _logged(s3: Any, bucket: str) -> list[str]:
    """The request ids of every record in `bucket`."""
    return [
        json.loads(line)["request_id"]
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        for line in gzip.decompress(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()).splitlines()
    ]


def test_sigterm_writes_every_logged_prediction_to_s3_once(built_image: BuiltImage, docker_client: Any) -> None:
    """The image's prediction log under 16 concurrent clients, then SIGTERM (what a pod's termination sends): every
    answered request id is in S3 exactly once."""
    with _logging_service(built_image.info.id, docker_client) as (container, url, s3, bucket):
        with ThreadPoolExecutor(16) as pool:
            answered = list(pool.map(lambda n: _predict(url, n), range(1000)))
        container.stop(timeout=30)  # SIGTERM, then SIGKILL after 30 s
        assert container.wait(timeout=5)["StatusCode"] == 0
        logged = _logged(s3, bucket)
    assert sorted(logged) == sorted(answered) and len(set(logged)) == 1000


def test_sigkill_loses_only_the_buffer_metrics_reported(built_image: BuiltImage, docker_client: Any) -> None:
    """SIGKILL (no flush) after 120 predictions with a write every 50 records: S3 holds exactly the records
    /metrics counted as written, each once, and the loss is the buffer /metrics reported. No timed write: on a
    loaded machine the 30-s one could land between reading /metrics and the kill."""
    options = {"log_flush_records": "50", "log_flush_seconds": "3600"}
    with _logging_service(built_image.info.id, docker_client, **options) as (container, url, s3, bucket):
        answered = [_predict(url, n) for n in range(120)]

        def metric(name: str) -> int:
            text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
            match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
            assert match, name
            return int(float(match.group(1)))

        written = 'oncology_prediction_log_records_total{outcome="written"}'
        buffered = "oncology_prediction_log_buffered_records"
        deadline = time.monotonic() + 30
        while metric(written) + metric(buffered) != 120 or metric(buffered) >= 50:  # the writer is done
            assert time.monotonic() < deadline, (metric(written), metric(buffered))
            time.sleep(0.2)
        reported_written, reported_buffered = metric(written), metric(buffered)
        container.kill()  # SIGKILL: the buffer is gone
        logged = _logged(s3, bucket)
    assert len(logged) == len(set(logged)) == reported_written >= 120 - 49
    assert set(logged) <= set(answered) and len(answered) - len(logged) == reported_buffered
