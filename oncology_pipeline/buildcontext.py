"""The serving image's build context: Dockerfile, wheels/ and the model bundle (no Prefect here).

The wheels are the locked runtime dependencies, downloaded as binary wheels for the image's Python and
platform (not for whatever runs the pipeline) into a wheelhouse cached by the hash of the requirements, plus
the project's own wheel: the build itself needs no package index.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

from oncology_model.files import staged_directory
from oncology_pipeline.errors import BuildFailed, ConfigurationError, TransientError, is_transient_message

#: Python of the serving image; the wheelhouse is downloaded for it, whatever runs the pipeline.
IMAGE_PYTHON = "3.11"
#: glibc of Debian 12 (bookworm), the distribution of both supported base images.
IMAGE_GLIBC = (2, 36)
BUNDLE_FILES = ("model.skops", "metadata.json")
_LOG_TAIL = 30


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
        if is_transient_message(str(exc)):
            raise TransientError(f"{exc}\nThe package index did not answer; retry later.") from exc
        raise


def _cache_root() -> Path:
    """Where wheelhouses are cached: wheels/ in $ONCOLOGY_CACHE_DIR, else in ~/.cache/oncology-mlops.

    The cache is the user's, like pip's, not the project's or the run's: every checkout, test and run on the
    machine shares it (its entries are keyed by the requirements), so only a new lock downloads again.
    """
    configured = os.environ.get("ONCOLOGY_CACHE_DIR")
    return (Path(configured) if configured else Path.home() / ".cache" / "oncology-mlops") / "wheels"


def dependency_wheelhouse(project_dir: Path, cache_dir: Path | None = None) -> Path:
    """The wheelhouse of the locked runtime dependencies, cached by the hash of the requirements."""
    pinned = for_image(export_requirements(project_dir))
    key_source = "\n".join([IMAGE_PYTHON, *_platforms(), *pinned])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    root = (cache_dir or _cache_root()).resolve()
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
