"""Container registry: ECR login, repository creation and image push (no Prefect here)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import docker
import requests
from botocore.exceptions import ClientError
from pydantic import SecretStr

from oncology_pipeline.errors import ConfigurationError, PushFailed, TransientError, is_transient, is_transient_message

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

_AUTH_MARKERS = ("unauthorized", "denied", "authentication required", "no basic auth credentials")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry login; the password is a SecretStr, so repr and logs never show it."""

    registry: str
    username: str
    password: SecretStr
    expires_at: datetime | None = None

    def auth_config(self) -> dict[str, str]:
        """The docker `auth_config` for a push (the only place the password is revealed)."""
        return {
            "username": self.username,
            "password": self.password.get_secret_value(),
            "serveraddress": self.registry,
        }


def _strip_scheme(address: str) -> str:
    """`https://host:port/` -> `host:port` (docker wants a bare registry address)."""
    return re.sub(r"^[a-z]+://", "", address.strip()).rstrip("/")


def _ecr_error(exc: ClientError, action: str) -> Exception:
    """Map an ECR ClientError to a transient or configuration error with a useful message."""
    error = exc.response.get("Error", {})
    message = f"ECR {action} failed: {error.get('Code', '?')}: {error.get('Message', exc)}"
    if is_transient(exc):
        return TransientError(message)
    return ConfigurationError(f"{message}. Check the AWS credentials, region and IAM permissions for {action}.")


def ecr_login(ecr_client: ECRClient, registry_override: str | None = None) -> RegistryCredentials:
    """Get an ECR token and decode it into registry credentials.

    The registry comes from the token's `proxyEndpoint` unless `registry_override` names another
    address (a local registry in tests, or a pull-through proxy).
    """
    try:
        response = ecr_client.get_authorization_token()
    except ClientError as exc:
        raise _ecr_error(exc, "GetAuthorizationToken") from exc
    data = response.get("authorizationData", [])
    if not data or "authorizationToken" not in data[0]:
        raise ConfigurationError("ECR returned no authorization data; check the account and region.")
    try:
        decoded = base64.b64decode(data[0]["authorizationToken"], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigurationError("ECR authorization token is not base64 'user:password'.") from exc
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password:
        raise ConfigurationError("ECR authorization token is not of the form 'user:password'.")
    registry = registry_override or data[0].get("proxyEndpoint", "")
    if not registry:
        raise ConfigurationError("ECR returned no proxyEndpoint; pass a registry address explicitly.")
    return RegistryCredentials(
        registry=_strip_scheme(registry),
        username=username,
        password=SecretStr(password),
        expires_at=data[0].get("expiresAt"),
    )


def ensure_repository(ecr_client: ECRClient, name: str) -> str:
    """Return the URI of ECR repository `name`, creating it (scan on push, immutable tags) if missing."""
    try:
        found = ecr_client.describe_repositories(repositoryNames=[name])
        return found["repositories"][0]["repositoryUri"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
            raise _ecr_error(exc, "DescribeRepositories") from exc
    try:
        created = ecr_client.create_repository(
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            imageTagMutability="IMMUTABLE",
        )
        return created["repository"]["repositoryUri"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RepositoryAlreadyExistsException":
            # Created concurrently by someone else: that is what we wanted.
            return ensure_repository(ecr_client, name)
        raise _ecr_error(exc, "CreateRepository") from exc


def repository_reference(credentials: RegistryCredentials, repository_uri: str) -> str:
    """The repository `repository_uri` addressed through the registry the credentials are for.

    Without an override this is `repository_uri` itself; with one (e.g. `127.0.0.1:5000`) the host
    part is replaced: `123.dkr.ecr.../oncology` -> `127.0.0.1:5000/oncology`.
    """
    _, _, path = _strip_scheme(repository_uri).partition("/")
    if not path:
        raise ConfigurationError(f"Repository URI {repository_uri!r} has no repository path.")
    return f"{credentials.registry}/{path}"


def _classify_push_error(message: str, repository: str, tag: str, registry: str) -> Exception:
    """Turn a push error line into PushFailed (fix something) or TransientError (retry)."""
    lowered = message.lower()
    if any(marker in lowered for marker in _AUTH_MARKERS):
        return PushFailed(
            f"Registry {registry} refused the push of {repository}:{tag}: {message}. "
            "Check the registry credentials (ECR token not expired, right account/region, "
            "registry override pointing at the right registry) and the push permissions."
        )
    if is_transient_message(message):
        return TransientError(f"Push of {repository}:{tag} to {registry} broke off: {message}. Retry later.")
    return PushFailed(f"Push of {repository}:{tag} to {registry} failed: {message}")


def _describe(line: Mapping[str, Any]) -> str | None:
    """One readable log line for a push progress entry, or None for byte-progress noise."""
    if "progress" in line:
        return None
    parts = [str(line[key]) for key in ("id", "status") if line.get(key)]
    return ": ".join(parts) if parts else None


def _consume_push(
    lines: Iterable[Mapping[str, Any]], repository: str, tag: str, registry: str, log: Callable[[str], None]
) -> str:
    """Read the push stream: raise on any error line, return the digest."""
    digest: str | None = None
    for line in lines:
        if line.get("error") or line.get("errorDetail"):
            detail = line.get("errorDetail") or {}
            message = str(line.get("error") or detail.get("message") or line)
            raise _classify_push_error(message, repository, tag, registry)
        aux = line.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("Digest"), str):
            digest = aux["Digest"]
        text = _describe(line)
        if text:
            log(text)
    if digest is None or not _DIGEST.match(digest):
        raise PushFailed(
            f"Push of {repository}:{tag} to {registry} ended without a digest (got {digest!r}); "
            "the image may not be in the registry. Check the docker daemon log."
        )
    return digest


_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    )
)


def _manifest(method: str, repository: str, reference: str, credentials: RegistryCredentials) -> requests.Response:
    """Ask the registry's v2 API (ECR speaks it too) for a manifest, by tag or digest (plain HTTP only on loopback)."""
    registry, _, path = repository.partition("/")
    scheme = "http" if registry.split(":")[0] in ("localhost", "127.0.0.1") else "https"
    return requests.request(
        method,
        f"{scheme}://{registry}/v2/{path}/manifests/{reference}",
        auth=(credentials.username, credentials.password.get_secret_value()),
        headers={"Accept": _MANIFEST_TYPES},
        timeout=30,
    )


def holds_image(image: str, credentials: RegistryCredentials) -> bool:
    """Whether the registry still holds `repository@sha256:…` (a lifecycle policy or a person may delete it).

    True when the registry cannot be asked: the deploy's pull then says what is wrong."""
    repository, _, digest = image.partition("@")
    try:
        answer = _manifest("HEAD", repository, digest, credentials)
    except requests.exceptions.RequestException:
        return True
    return answer.status_code != 404


def pushed_digest(repository: str, tag: str, credentials: RegistryCredentials, image_id: str) -> str | None:
    """The digest of `repository:tag` if the registry already holds it for the image `image_id`, else None.

    Asks the registry for the tag's manifest and compares its config digest with the local image id. A tag that
    holds another image is a PushFailed: ECR tags are immutable.
    """
    try:
        answer = _manifest("GET", repository, tag, credentials)
    except requests.exceptions.RequestException:
        return None  # the push itself will say what is wrong with the registry
    if answer.status_code != 200:
        return None
    try:
        config = str(answer.json()["config"]["digest"])
    except (ValueError, KeyError, TypeError):
        return None
    if config != image_id:
        raise PushFailed(
            f"{repository}:{tag} already holds another image (config {config}, this one is {image_id}); "
            "tags are immutable: publish under a new version."
        )
    digest = answer.headers.get("Docker-Content-Digest")
    return digest if digest and _DIGEST.match(digest) else None


def push_image(
    client: docker.DockerClient,
    repository: str,
    tag: str,
    credentials: RegistryCredentials,
    log: Callable[[str], None],
    source_image: str | None = None,
) -> str:
    """Push `repository:tag` with `credentials`; return its digest (`sha256:...`).

    When `source_image` is given (an id or local tag) it is tagged as `repository:tag` first.
    Raises PushFailed for refusals (auth, missing image) and TransientError for 5xx, connection
    errors and timeouts.
    """
    if source_image is not None:
        image_id = str(client.images.get(source_image).id)
        existing = pushed_digest(repository, tag, credentials, image_id)
        if existing is not None:  # an earlier push that broke off after the registry stored it
            log(f"{repository}:{tag} is already in the registry as {existing} (same image): not pushed again")
            return existing
    try:
        if source_image is not None:
            client.api.tag(source_image, repository, tag)
        log(f"pushing {repository}:{tag} as {credentials.username}")
        stream = client.api.push(repository, tag, stream=True, decode=True, auth_config=credentials.auth_config())
        return _consume_push(stream, repository, tag, credentials.registry, log)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise TransientError(f"Lost the docker daemon while pushing {repository}:{tag}: {exc}") from exc
    except docker.errors.APIError as exc:
        raise _classify_push_error(str(exc.explanation or exc), repository, tag, credentials.registry) from exc
