"""The serving image: build context, build, and a smoke test of the built image (no Prefect here)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests
import urllib3
from packaging.requirements import Requirement

from oncology_model.files import staged_directory
from oncology_pipeline.errors import BuildFailed, ConfigurationError, SmokeTestFailed, TransientError
from oncology_pipeline.versioning import VERSION_PATTERN

#: Label holding the model version (the OCI labels hold the image version and the git revision).
MODEL_VERSION_LABEL = "org.oncology-mlops.model.version"
#: Python of the serving image; the wheelhouse is downloaded for it, whatever runs the pipeline.
IMAGE_PYTHON = "3.11"
#: glibc of Debian 12 (bookworm), the distribution of both supported base images.
IMAGE_GLIBC = (2, 36)
BUNDLE_FILES = ("model.skops", "metadata.json")
CONTAINER_PORT = 8000
#: Label on smoke-test containers, so leftovers (there should be none) are easy to find.
SMOKE_TEST_LABEL = "org.oncology-mlops.smoke-test"
_LOG_TAIL = 30
_NETWORK_MARKERS = (
    "connectionerror",
    "connection refused",
    "connection reset",
    "read timed out",
    "readtimeouterror",
    "temporary failure in name resolution",
    "max retries exceeded",
    "http error 5",
    "503 service unavailable",
)


@dataclass(frozen=True)
class ImageInfo:
    """A built image."""

    id: str
    tag: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test saw: the served answer and how long the container took to be ready."""

    image: str
    response: dict[str, Any]
    ready_seconds: float
    latency_ms: float


def _run(command: list[str], cwd: Path, what: str) -> str:
    """Run a command; raise BuildFailed with its stderr tail when it fails."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{what}: {command[0]} is not installed") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-_LOG_TAIL:])
        raise BuildFailed(f"{what} failed (exit {done.returncode}): {' '.join(command[:4])} ...\n{tail}")
    return done.stdout


def _uv() -> str:
    """The uv executable: the one running us (`uv run` sets UV), else `uv` on PATH."""
    return os.environ.get("UV") or shutil.which("uv") or "uv"


def export_requirements(project_dir: Path) -> str:
    """The locked runtime requirements (no extras, no dev group, no project) as requirements.txt text."""
    return _run(
        [
            _uv(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--no-header",
            "--format",
            "requirements-txt",
        ],
        project_dir,
        "exporting the locked runtime requirements",
    )


def _arch() -> str:
    """The machine architecture as wheel tags spell it (the image runs on this docker host)."""
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)


def _platforms() -> list[str]:
    """pip `--platform` tags the image's glibc accepts (pip does not expand manylinux_2_X itself)."""
    arch = _arch()
    major, newest = IMAGE_GLIBC
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def for_image(requirements: str) -> list[str]:
    """The pinned requirements that apply in the image (markers evaluated for its Python, not ours)."""
    environment = {
        "python_version": IMAGE_PYTHON,
        "python_full_version": f"{IMAGE_PYTHON}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": _arch(),
    }
    pinned = []
    for line in requirements.splitlines():
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            pinned.append(str(requirement))
    return sorted(pinned)


def _pip() -> list[str]:
    """A pip command: this interpreter's pip if it has one, else pip run through uv."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    return [_uv(), "tool", "run", "--from", "pip", "pip"]


def _download_wheels(pinned: list[str], target: Path) -> None:
    """Download binary wheels of the pinned requirements for the image's Python and platform."""
    target.mkdir(parents=True)
    (target / "requirements.txt").write_text("".join(f"{line}\n" for line in pinned))
    python_tag = IMAGE_PYTHON.replace(".", "")
    command = [
        *_pip(),
        "download",
        "--quiet",
        "--no-deps",  # the export is the full locked closure
        "--only-binary=:all:",
        "--python-version",
        IMAGE_PYTHON,
        "--implementation",
        "cp",
        "--abi",
        f"cp{python_tag}",
        "--abi",
        "abi3",
        "--abi",
        "none",
        *[arg for tag in _platforms() for arg in ("--platform", tag)],
        "--dest",
        str(target),
        "-r",
        str(target / "requirements.txt"),
    ]
    try:
        _run(command, target, "downloading the runtime wheels")
    except BuildFailed as exc:
        if any(marker in str(exc).lower() for marker in _NETWORK_MARKERS):
            raise TransientError(f"{exc}\nThe package index did not answer; retry later.") from exc
        raise


def _cache_root(project_dir: Path) -> Path:
    """Where wheelhouses are cached: $ONCOLOGY_CACHE_DIR, else .work/cache in the project."""
    configured = os.environ.get("ONCOLOGY_CACHE_DIR")
    return Path(configured) if configured else project_dir / ".work" / "cache"


def dependency_wheelhouse(project_dir: Path, cache_dir: Path | None = None) -> Path:
    """The wheelhouse of the locked runtime dependencies, cached by the hash of the requirements."""
    pinned = for_image(export_requirements(project_dir))
    key_source = "\n".join([IMAGE_PYTHON, *_platforms(), *pinned])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    root = (cache_dir or _cache_root(project_dir)).resolve()
    wheelhouse = root / f"wheelhouse-{key}"
    if wheelhouse.is_dir():
        return wheelhouse
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".wheelhouse-{key}-", dir=root))
    try:
        _download_wheels(pinned, staging / "wheels")
        (staging / "wheels").rename(wheelhouse)
    except OSError:
        if not wheelhouse.is_dir():  # another build renamed its copy first: use that one
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return wheelhouse


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link a file (cheap) or copy it when links are impossible (another file system)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _make_world_readable(root: Path) -> None:
    """Directories 0755 and files 0644 under `root`, so the image's non-root user can read them."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def prepare_build_context(project_dir: Path, bundle_dir: Path, out_dir: Path, cache_dir: Path | None = None) -> Path:
    """Write a complete build context to `out_dir`: Dockerfile, wheels/ and the bundle under model/.

    The dependency wheels come from a cache keyed by the locked requirements, so a new model alone
    downloads nothing. The context is assembled in a temporary directory and renamed into place:
    a failure leaves no half-built context.
    """
    project_dir, bundle_dir, out_dir = project_dir.resolve(), bundle_dir.resolve(), out_dir.resolve()
    missing = [name for name in BUNDLE_FILES if not (bundle_dir / name).is_file()]
    if missing:
        raise ConfigurationError(f"{bundle_dir} is not a model bundle: {', '.join(missing)} missing")
    dockerfile = project_dir / "Dockerfile"
    if not dockerfile.is_file():
        raise ConfigurationError(f"no Dockerfile in {project_dir}")
    wheelhouse = dependency_wheelhouse(project_dir, cache_dir)

    with staged_directory(out_dir) as staging:
        shutil.copy2(dockerfile, staging / "Dockerfile")
        if (project_dir / ".dockerignore").is_file():
            shutil.copy2(project_dir / ".dockerignore", staging / ".dockerignore")
        wheels = staging / "wheels"
        wheels.mkdir()
        for item in wheelhouse.iterdir():
            _link_or_copy(item, wheels / item.name)
        _run(
            [_uv(), "build", "--wheel", "--quiet", "--out-dir", str(wheels), str(project_dir)],
            project_dir,
            "building the project wheel",
        )
        (wheels / ".gitignore").unlink(missing_ok=True)  # uv build drops one into its out-dir
        shutil.copytree(bundle_dir, staging / "model", ignore=shutil.ignore_patterns("__pycache__", ".*"))
        _make_world_readable(staging / "model")
    return out_dir


def _image_id(client: docker.DockerClient, reference: str) -> str | None:
    """The id of the local image `reference` names, or None."""
    try:
        return str(client.images.get(reference).id)
    except docker.errors.ImageNotFound:
        return None


@contextlib.contextmanager
def _responses(client: docker.DockerClient) -> Iterator[list[requests.Response]]:
    """The HTTP responses `client` receives in the block (a requests response hook), closed when it ends.

    Closing a build's streaming response is how a client stops a classic build: the daemon cancels it,
    killing and removing the container of the running step.
    """
    received: list[requests.Response] = []

    def keep(response: requests.Response, **_: Any) -> None:
        received.append(response)

    client.api.hooks["response"].append(keep)
    try:
        yield received
    finally:
        client.api.hooks["response"].remove(keep)
        for response in received:
            response.close()


def _until(
    client: docker.DockerClient, lines: Iterable[dict[str, Any]], responses: list[requests.Response], deadline: float
) -> Iterator[dict[str, Any]]:
    """The build's lines while time remains; each read may block only until `deadline`, then TimeoutError.

    A build step can be silent for minutes (`RUN` without output), so a deadline checked between lines is not
    enough: the socket's read timeout is set to the time left before each read, as the docker SDK itself
    adjusts it for attach streams (`APIClient._get_raw_response_socket`, `_disable_socket_timeout`).
    """
    sockets: list[Any] = []
    for response in responses:
        raw = client.api._get_raw_response_socket(response)
        sockets += [s for s in (raw, getattr(raw, "_sock", None)) if hasattr(s, "settimeout")]
    iterator = iter(lines)
    while (remaining := deadline - time.monotonic()) > 0:
        for sock in sockets:
            sock.settimeout(remaining)
        line = next(iterator, None)
        if line is None:
            return
        yield line
    raise TimeoutError


def _untag_if_changed(client: docker.DockerClient, tag: str, previous: str | None) -> None:
    """Undo a tag a stopped build may have set at its very end: drop it, and give it back to its former image."""
    if _image_id(client, tag) in (None, previous):
        return
    client.images.remove(tag)
    if previous is not None:
        client.api.tag(previous, *docker.utils.parse_repository_tag(tag))


def build_image(
    client: docker.DockerClient,
    context_dir: Path,
    tag: str,
    build_args: Mapping[str, str],
    log: Callable[[str], None],
    *,
    nocache: bool = False,
    timeout: float | None = None,
) -> ImageInfo:
    """Build `context_dir` as `tag`, streaming every build line into `log` (`nocache`: reuse no layer).

    Raises BuildFailed with the last lines of output when the build fails, or when it takes longer than
    `timeout` seconds (None: no limit): then the daemon is made to stop the build and `tag` names what it
    named before (nothing, or the earlier image). Build-arg values are never logged (they may hold index
    credentials).
    """
    tail: deque[str] = deque(maxlen=_LOG_TAIL)
    image_id: str | None = None
    previous = _image_id(client, tag) if timeout is not None else None
    deadline = time.monotonic() + timeout if timeout is not None else None
    try:
        with _responses(client) as responses:
            stream: Iterable[dict[str, Any]] = client.api.build(
                path=str(context_dir),
                tag=tag,
                buildargs=dict(build_args),
                rm=True,
                forcerm=True,
                nocache=nocache,
                pull=False,
                decode=True,
                timeout=timeout,  # requests' connect and read timeout until the first line; then _until
            )
            if deadline is not None:
                stream = _until(client, stream, responses, deadline)
            for line in stream:
                if "error" in line or "errorDetail" in line:
                    detail = line.get("errorDetail") or {}
                    message = str(line.get("error") or detail.get("message") or line)
                    raise BuildFailed(f"Building {tag} failed: {message}\nLast build output:\n" + "\n".join(tail))
                text = line.get("stream") or line.get("status")
                if isinstance(text, str):
                    for part in text.rstrip("\n").splitlines():
                        if part.strip():
                            tail.append(part)
                            log(part)
                aux = line.get("aux")
                if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
                    image_id = aux["ID"]
    except (TimeoutError, urllib3.exceptions.TimeoutError, requests.exceptions.Timeout) as exc:
        _untag_if_changed(client, tag, previous)  # the response is closed: the daemon has stopped the build
        raise BuildFailed(
            f"Building {tag} took longer than the limit of {timeout:g} s (build_timeout_seconds): stopped, "
            "nothing tagged. Find the slow step in the output below, or raise the limit.\nLast build output:\n"
            + "\n".join(tail)
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise TransientError(f"Lost the docker daemon while building {tag}: {exc}") from exc
    except docker.errors.APIError as exc:
        raise BuildFailed(f"Docker refused to build {tag}: {exc.explanation or exc}") from exc
    image = client.images.get(image_id or tag)
    return ImageInfo(
        id=str(image.id),
        tag=tag,
        size=int(image.attrs["Size"]),
        labels=dict(image.labels or {}),
    )


def _http(method: str, url: str, body: Mapping[str, Any] | None, timeout: float) -> tuple[int, bytes]:
    """One HTTP request; returns status and body (HTTP errors are answers, not exceptions)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _logs(container: Any) -> str:
    """The container's last log lines, or why they are unavailable."""
    try:
        return bytes(container.logs(tail=50)).decode(errors="replace")
    except docker.errors.APIError as exc:
        return f"(no logs: {exc})"


def _host_port(container: Any) -> int:
    """The loopback port docker published the service port on."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{CONTAINER_PORT}/tcp") or []
    if not bindings:
        raise SmokeTestFailed(f"container {container.short_id} published no port for {CONTAINER_PORT}/tcp")
    return int(bindings[0]["HostPort"])


def _compare(response: Mapping[str, Any], expected: Mapping[str, Any], model_version: str) -> list[str]:
    """What differs between the served answer and the expected one."""
    problems = []
    if response.get("prediction") != expected.get("prediction"):
        problems.append(f"prediction {response.get('prediction')!r} != expected {expected.get('prediction')!r}")
    served = response.get("probability_malignant")
    wanted = expected.get("probability_malignant")
    if wanted is not None and (
        not isinstance(served, (int, float)) or not math.isclose(served, float(wanted), abs_tol=1e-6)
    ):
        problems.append(f"probability_malignant {served!r} != expected {wanted!r}")
    if response.get("model_version") != model_version:
        problems.append(f"model_version {response.get('model_version')!r} != bundle's {model_version!r}")
    return problems


def smoke_test_image(
    client: docker.DockerClient,
    image: str,
    bundle_dir: Path,
    tumor: Mapping[str, int],
    expected: Mapping[str, Any],
    timeout: float = 60.0,
) -> SmokeResult:
    """Run `image` (read-only root fs, loopback port), ask it for one prediction, compare with `expected`.

    `expected` holds the bundle's own answer (`prediction`, optionally `probability_malignant`); the
    served `model_version` must be the bundle's. The container is removed on every path, a failed start and
    an interruption included. Raises SmokeTestFailed, with the container's logs, on a wrong answer, a crash or
    a timeout.
    """
    model_version = str(json.loads((bundle_dir / "metadata.json").read_text())["model_version"])
    try:
        container = client.containers.create(
            image,
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},
            read_only=True,
            tmpfs={"/tmp": "rw,size=16m"},
            labels={SMOKE_TEST_LABEL: "true"},
        )
    except docker.errors.APIError as exc:
        raise SmokeTestFailed(f"cannot create a container of {image}: {exc.explanation or exc}") from exc
    started = time.monotonic()
    try:  # from here on, whatever happens (a failed start, a timeout, an interruption), the container goes
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise SmokeTestFailed(f"cannot start a container of {image}: {exc.explanation or exc}") from exc
        base = f"http://127.0.0.1:{_host_port(container)}"
        while True:
            try:
                status, _ = _http("GET", f"{base}/readyz", None, timeout=2)
            except (OSError, urllib.error.URLError):
                status = 0
            if status == 200:
                break
            container.reload()
            if container.status in ("exited", "dead"):
                raise SmokeTestFailed(
                    f"{image} exited before it was ready (status {container.status}); logs:\n{_logs(container)}"
                )
            if time.monotonic() - started > timeout:
                raise SmokeTestFailed(
                    f"{image} was not ready (GET /readyz 200) within {timeout:.0f} s; logs:\n{_logs(container)}"
                )
            time.sleep(0.25)
        ready_seconds = time.monotonic() - started
        sent = time.perf_counter()
        status, body = _http("POST", f"{base}/v1/predictions", tumor, timeout=10)
        latency_ms = (time.perf_counter() - sent) * 1000
        if status != 200:
            raise SmokeTestFailed(
                f"{image} answered POST /v1/predictions with {status}: {body[:500]!r}; logs:\n{_logs(container)}"
            )
        response: dict[str, Any] = json.loads(body)
        problems = _compare(response, expected, model_version)
        if problems:
            raise SmokeTestFailed(
                f"{image} does not serve the bundle's answer: {'; '.join(problems)}; logs:\n{_logs(container)}"
            )
        return SmokeResult(image=image, response=response, ready_seconds=ready_seconds, latency_ms=latency_ms)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


# --- local leftovers (housekeeping) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalTag:
    """A local tag of an image this pipeline built: `<repository>:<version>` or `<registry>/<repository>:<version>`."""

    reference: str
    version: str
    image_id: str


def pipeline_tags(client: docker.DockerClient, repository: str) -> list[LocalTag]:
    """The local tags each publish leaves behind (the build's tag and the registry's): images carrying the model
    version label, tagged with a pipeline version in `repository` on any registry. Nothing else is listed."""
    found = []
    for image in client.images.list(filters={"label": MODEL_VERSION_LABEL}):
        for reference in image.tags:
            name, tag = docker.utils.parse_repository_tag(reference)
            if (name == repository or name.endswith(f"/{repository}")) and tag and VERSION_PATTERN.fullmatch(tag):
                found.append(LocalTag(reference=reference, version=tag, image_id=str(image.id)))
    return found


def remove_tags(client: docker.DockerClient, tags: Iterable[LocalTag]) -> list[str]:
    """Untag each (an image goes with its last tag, with its untagged parents); returns the references removed.

    Never forced: the tags of an image any container uses (running or stopped) are left, and so is a tag
    docker refuses to remove.
    """
    in_use = {str(c["ImageID"]) for c in client.api.containers(all=True)}
    removed = []
    for tag in tags:
        if tag.image_id in in_use:
            continue
        try:
            client.images.remove(tag.reference)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: a container started on it meanwhile
                raise
            continue
        removed.append(tag.reference)
    return removed


def remove_smoke_containers(client: docker.DockerClient, repository: str, older_than: float) -> list[str]:
    """Remove the smoke-test containers of `repository`'s images created more than `older_than` seconds ago (left
    by a killed run: the smoke test removes its own); younger ones may belong to a smoke test still running.
    Returns their ids."""
    removed = []
    for found in client.api.containers(all=True, filters={"label": SMOKE_TEST_LABEL}):
        name, _ = docker.utils.parse_repository_tag(str(found["Image"]))
        if name == repository and time.time() - float(found["Created"]) > older_than:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(found["Id"], force=True)
                removed.append(str(found["Id"]))
    return removed
