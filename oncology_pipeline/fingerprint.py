"""What a night's model depends on, as one digest; and what a run must do given the release records.

Same fingerprint, same model: training is deterministic (fixed seeds, canonical model files), so a night whose
inputs equal production's has nothing to release, and a night whose inputs equal a failed run's can pick up
that run's candidate (and image) instead of redoing it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from oncology_pipeline.releases import DataFile, ReleaseRecord
from oncology_pipeline.s3store import CachedDownload

#: The code a model and its image are made from: the model package (training and serving), the image recipe and
#: what assembles the build context (the dependency lock has a field of its own, `lock_sha256`).
CODE_PATHS = ("oncology_model", "Dockerfile", ".dockerignore", "oncology_pipeline/buildcontext.py")


class Fingerprint(BaseModel):
    """The inputs of one release: data (the training CSV and the labelled cases), configuration, code and base
    image, and where it goes (registry, repository, cluster, namespace, team, Service)."""

    data_uri: str
    data_etag: str
    data_sha256: str
    labelled_data: list[DataFile] = Field(default_factory=list, description="the labelled cases' files, by key")
    config_sha256: str
    code_sha256: str
    lock_sha256: str | None
    base_image: str
    target: dict[str, str | None] = Field(default_factory=dict, description="settings.deploy_target()")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def digest(self) -> str:
        """sha256 over every other field but the ETags: equal digests, equal inputs. A file is its bytes (sha256);
        the same bytes uploaded again get a new ETag and are the same input."""
        fields = self.model_dump(exclude={"digest": True, "data_etag": True, "labelled_data": {"__all__": {"etag"}}})
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of the configuration as canonical JSON (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def code_sha256(project_dir: Path, paths: tuple[str, ...] = CODE_PATHS) -> str:
    """sha256 over the relative path and bytes of every source file under `paths` (caches excluded)."""
    digest = hashlib.sha256()
    for name in paths:
        root = project_dir / name
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(path.relative_to(project_dir).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_files(downloads: Sequence[CachedDownload]) -> list[DataFile]:
    """Downloaded files as the fingerprint names them (bucket, key, ETag, sha256 of the bytes), sorted by key."""
    return [
        DataFile(bucket=d.source.bucket, key=d.source.key, etag=d.source.etag, sha256=file_sha256(d.path))
        for d in sorted(downloads, key=lambda d: (d.source.bucket, d.source.key))
    ]


Action = Literal["no-change", "held", "resume", "full"]


@dataclass(frozen=True)
class Plan:
    """What this run does: nothing (production already has these inputs, or the version made from them is held
    back by what happened to it), resume an earlier run, or everything.

    `version` is production's (no-change), the held one's, or the resumed run's; `tested` and `image` say which of
    the resumed run's stages completed."""

    action: Action
    reason: str
    version: str | None = None
    tested: bool = False
    image: str | None = None


def plan_run(
    fingerprint: Fingerprint,
    production: ReleaseRecord | None,
    earlier: ReleaseRecord | None,
    force: bool,
    replaced: ReleaseRecord | None = None,
) -> Plan:
    """Decide from production's release record, the latest earlier record with the same fingerprint and, when a
    person put production there (`pinned`), the record of the version that took out (`replaced`)."""
    digest = fingerprint.digest
    if force:
        return Plan("full", "force=True: every stage runs")
    if production is not None and production.fingerprint.get("digest") == digest:
        return Plan(
            "no-change",
            f"production {production.model_version} was built from the same data, configuration, code and "
            f"base image (fingerprint {digest[:12]})",
            production.model_version,
        )
    pinned = production.pinned if production is not None else None
    if pinned is not None and replaced is not None and replaced.fingerprint.get("digest") == digest:
        why = f": {pinned.reason}" if pinned.reason else ""
        return _hold(
            replaced.model_version,
            f"production {pinned.to} was put there by hand ({pinned.action} by {pinned.by} at "
            f"{pinned.at:%Y-%m-%d %H:%M} UTC{why}), taking out {replaced.model_version}, which was made from these "
            "inputs",
        )
    if earlier is None or earlier.production or earlier.fingerprint.get("digest") != digest:
        return Plan("full", "no earlier run with these inputs")
    held = _held(earlier)
    if held is not None:
        return _hold(earlier.model_version, held)
    if not earlier.gate.passed:
        return Plan("full", f"{earlier.model_version} had these inputs but did not pass the gate: training again")
    image = earlier.image.reference if earlier.image.digest else None
    tested = bool(earlier.tests.tests)
    done = ["train", *(["test"] if tested else []), *(["publish"] if image else [])]
    return Plan(
        "resume",
        f"{earlier.model_version} had the same inputs and stopped after {', '.join(done)} "
        f"({earlier.outcome}): resuming it",
        earlier.model_version,
        tested=tested,
        image=image,
    )


def _hold(version: str, why: str) -> Plan:
    """Plan "held": `version`, made from tonight's inputs, is not released again, and what would release it."""
    release = f"release it with model_version={version}, or train anew with force=true"
    return Plan("held", f"{why}: a nightly does not release it again ({release})", version)


def _held(earlier: ReleaseRecord) -> str | None:
    """Why a version made from tonight's inputs must not be resumed (an operator's decision, or its image failing
    verification), or None."""
    version = earlier.model_version
    if earlier.rolled_back is not None:
        back = earlier.rolled_back
        why = f": {back.reason}" if back.reason else ""
        return f"{version} was rolled back to {back.to} by {back.by} at {back.at:%Y-%m-%d %H:%M} UTC{why}"
    if earlier.promoted_at:
        return f"{version} served production before and was replaced by {earlier.superseded_by or 'another version'}"
    if earlier.verification.passed is False:
        return f"{version}'s image failed verification at deploy ({earlier.verification.summary or '-'})"
    return None
