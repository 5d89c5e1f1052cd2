"""ECR login (moto), repository creation, and pushes to the real authenticated registry."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from mypy_boto3_ecr import ECRClient
from pydantic import SecretStr

from oncology_pipeline.errors import PushFailed, TransientError, is_transient
from oncology_pipeline.registry import (
    RegistryCredentials,
    _consume_push,
    ecr_login,
    ensure_repository,
    holds_image,
    push_image,
    repository_reference,
)
from tests.support import docker_env
from tests.support.docker_env import BuiltImage
from tests.support.moto_server import free_port

MOTO_PASSWORD = docker_env.MOTO_ECR_PASSWORD
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MANIFEST_TYPES = docker_env.MANIFEST_TYPES


def _name() -> str:
    return f"oncology-model-{uuid.uuid4().hex[:8]}"


# --- ECR -----------------------------------------------------------------------------------------


def test_ecr_login_decodes_the_token_and_hides_the_password(ecr_client: ECRClient) -> None:
    credentials = ecr_login(ecr_client, None)
    assert credentials.username == "AWS"
    assert credentials.password.get_secret_value() == MOTO_PASSWORD
    assert credentials.registry == "123456789012.dkr.ecr.eu-central-1.amazonaws.com"
    assert MOTO_PASSWORD not in repr(credentials)
    assert MOTO_PASSWORD not in str(credentials)
    assert credentials.auth_config() == {
        "username": "AWS",
        "password": MOTO_PASSWORD,
        "serveraddress": "123456789012.dkr.ecr.eu-central-1.amazonaws.com",
    }


def test_ecr_login_with_a_registry_override(ecr_client: ECRClient) -> None:
    credentials = ecr_login(ecr_client, "https://127.0.0.1:5000/")
    assert credentials.registry == "127.0.0.1:5000"
    assert credentials.username == "AWS"


def test_ensure_repository_creates_a_scanned_immutable_repository_once(ecr_client: ECRClient) -> None:
    name = _name()
    uri = ensure_repository(ecr_client, name)
    assert uri == f"123456789012.dkr.ecr.eu-central-1.amazonaws.com/{name}"
    assert ensure_repository(ecr_client, name) == uri
    (repository,) = ecr_client.describe_repositories(repositoryNames=[name])["repositories"]
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["imageTagMutability"] == "IMMUTABLE"


def test_repository_reference_swaps_the_registry_host() -> None:
    local = RegistryCredentials(registry="127.0.0.1:5000", username="AWS", password=SecretStr("x"))
    ecr = RegistryCredentials(registry="1.dkr.ecr.eu-central-1.amazonaws.com", username="AWS", password=SecretStr("x"))
    uri = "1.dkr.ecr.eu-central-1.amazonaws.com/team/oncology-model"
    assert repository_reference(local, uri) == "127.0.0.1:5000/team/oncology-model"
    assert repository_reference(ecr, uri) == uri


# --- pushes to the real registry ------------------------------------------------------------------


def test_push_returns_the_digest_and_the_image_pulls_by_digest(
    built_image: BuiltImage, docker_client: Any, ecr_client: ECRClient, registry_address: str
) -> None:
    credentials = ecr_login(ecr_client, registry_address)
    repository = repository_reference(credentials, ensure_repository(ecr_client, _name()))
    log: list[str] = []
    digest = push_image(docker_client, repository, "1.0.0", credentials, log.append, source_image=built_image.info.id)
    assert DIGEST.match(digest), digest
    assert not any(MOTO_PASSWORD in line for line in log)
    assert any(word in line for line in log for word in ("Pushed", "Layer already exists", "Mounted from"))
    path = repository.removeprefix(f"{registry_address}/")
    try:
        # The registry holds exactly that manifest ...
        status, headers = docker_env.registry_request(
            f"/v2/{path}/manifests/1.0.0", "AWS", MOTO_PASSWORD, MANIFEST_TYPES
        )
        assert status == 200
        assert headers["Docker-Content-Digest"] == digest
        # ... and docker pulls the image back by its digest.
        pulled = docker_client.images.pull(f"{repository}@{digest}", auth_config=credentials.auth_config())
        assert pulled.id == built_image.info.id
        assert f"{repository}@{digest}" in pulled.attrs["RepoDigests"]
        assert holds_image(f"{repository}@{digest}", credentials)
    finally:  # the registry's garbage collection (at its next start) reclaims the blobs
        docker_env.registry_request(f"/v2/{path}/manifests/{digest}", "AWS", MOTO_PASSWORD, method="DELETE")
    assert not holds_image(f"{repository}@{digest}", credentials)  # deleted: a resumed run publishes again


def test_a_push_repeated_after_the_registry_stored_the_image_is_recognised_by_its_digest(
    built_image: BuiltImage, docker_client: Any, ecr_client: ECRClient, registry_address: str
) -> None:
    """A push whose stream broke after the registry stored the image: the retry finds it instead of failing."""
    credentials = ecr_login(ecr_client, registry_address)
    repository = repository_reference(credentials, ensure_repository(ecr_client, _name()))
    first = push_image(docker_client, repository, "1.0.0", credentials, lambda line: None, built_image.info.id)
    log: list[str] = []
    again = push_image(docker_client, repository, "1.0.0", credentials, log.append, source_image=built_image.info.id)
    assert again == first
    assert log == [f"{repository}:1.0.0 is already in the registry as {first} (same image): not pushed again"]
    with pytest.raises(PushFailed, match="already holds another image"):
        push_image(docker_client, repository, "1.0.0", credentials, log.append, source_image=docker_env.BASE_IMAGE)


def test_a_wrong_password_is_refused_with_push_failed_and_nothing_lands(
    built_image: BuiltImage, docker_client: Any, registry_address: str
) -> None:
    credentials = RegistryCredentials(registry=registry_address, username="AWS", password=SecretStr("wrong-password"))
    repository = f"{registry_address}/{_name()}"
    log: list[str] = []
    with pytest.raises(PushFailed, match=r"refused the push.*(unauthorized|authentication required)") as failure:
        push_image(docker_client, repository, "1.0.0", credentials, log.append, source_image=built_image.info.id)
    assert "Check the registry credentials" in str(failure.value)
    assert "wrong-password" not in str(failure.value)
    assert not is_transient(failure.value)
    path = repository.removeprefix(f"{registry_address}/")
    status, _ = docker_env.registry_request(f"/v2/{path}/manifests/1.0.0", "AWS", MOTO_PASSWORD, MANIFEST_TYPES)
    assert status == 404


def test_a_registry_that_does_not_answer_is_a_transient_error(
    built_image: BuiltImage, docker_client: Any, registry_address: str
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    credentials = RegistryCredentials(registry=nowhere, username="AWS", password=SecretStr(MOTO_PASSWORD))
    with pytest.raises(TransientError, match="connection refused") as failure:
        push_image(
            docker_client,
            f"{nowhere}/{_name()}",
            "1.0.0",
            credentials,
            lambda _: None,
            source_image=built_image.info.id,
        )
    assert is_transient(failure.value)


def test_pushing_an_image_that_does_not_exist_fails(docker_client: Any, registry_address: str) -> None:
    credentials = RegistryCredentials(registry=registry_address, username="AWS", password=SecretStr(MOTO_PASSWORD))
    with pytest.raises(PushFailed, match=r"does not exist|No such image"):
        push_image(docker_client, f"{registry_address}/{_name()}", "nope", credentials, lambda _: None)


# --- the push stream, line by line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("unauthorized: authentication required", PushFailed),
        ("denied: requested access to the resource is denied", PushFailed),
        ("no basic auth credentials", PushFailed),
        ("received unexpected HTTP status: 503 Service Unavailable", TransientError),
        ("Put https://r/v2/x/blobs/uploads/: net/http: TLS handshake timeout", TransientError),
        ("read tcp 10.0.0.1:443: connection reset by peer", TransientError),
        ("manifest invalid: manifest invalid", PushFailed),
    ],
)
def test_every_error_line_raises_the_right_class(error: str, expected: type[Exception]) -> None:
    stream: list[dict[str, Any]] = [
        {"status": "Preparing", "id": "abc"},
        {"error": error, "errorDetail": {"message": error}},
    ]
    with pytest.raises(expected) as failure:
        _consume_push(stream, "r/x", "1", "r", lambda _: None)
    assert type(failure.value) is expected
    assert error in str(failure.value)


def test_a_stream_without_a_digest_is_a_failed_push() -> None:
    with pytest.raises(PushFailed, match="without a digest"):
        _consume_push([{"status": "Pushed", "id": "abc"}], "r/x", "1", "r", lambda _: None)


def test_the_digest_comes_from_the_aux_line_and_progress_is_not_logged() -> None:
    digest = "sha256:" + "ab" * 32
    log: list[str] = []
    stream: list[dict[str, Any]] = [
        {"status": "Pushing", "id": "abc", "progress": "[=>   ] 1MB/9MB", "progressDetail": {"current": 1}},
        {"status": "Pushed", "id": "abc"},
        {"status": f"1: digest: {digest} size: 1234"},
        {"progressDetail": {}, "aux": {"Tag": "1", "Digest": digest, "Size": 1234}},
    ]
    assert _consume_push(stream, "r/x", "1", "r", log.append) == digest
    assert log == ["abc: Pushed", f"1: digest: {digest} size: 1234"]
