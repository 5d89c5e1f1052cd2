"""One release record per model version: `s3://<model-bucket>/releases/<version>.json`, rewritten whole.

It says where the version came from (data, code, configuration), what it passed (gate, suites), what was
built and deployed (image digest, cluster, previous images), whether the running service was verified, and
whether the version is production now. The production pointer names a version only after its record says
`verified`; the pointer, the cluster's annotations and this record agree after every run.

The schema is `ReleaseRecord` and its sections below; flows change a record only through the builders
(`trained`, `tested`, `published`, `rolled_out`, `rolled_back`, `failed`), merged by `merge` and written whole. Every
section keeps fields it does not know (records written by older code still read), and leaves out what is unset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from oncology_model.data import FileSummary
from oncology_pipeline import layout, modelstore, s3store
from oncology_pipeline.summary import STAGES, table_cell

ANNOTATION_VERSION = "oncology-mlops/model-version"
ANNOTATION_RELEASE = "oncology-mlops/release"


def record_uri(bucket: str, version: str) -> str:
    """`s3://<bucket>/releases/<version>.json`: where a version's release record lives."""
    return layout.uri(bucket, layout.release_key(version))


def deployment_annotations(version: str, release: str) -> dict[str, str]:
    """What a verified deploy of `version` writes on the Deployments: the version and its release record's URI."""
    return {ANNOTATION_VERSION: version, ANNOTATION_RELEASE: release}


def serving_env(image: str, version: str) -> dict[str, str]:
    """What a deploy of `image` (pinned by digest, holding model `version`) sets in the container's environment, in
    the same patch as the image: the digest the service logs with each prediction, and the model version it was set
    for. An image changed by hand leaves both behind; the service then sees another model and logs no digest."""
    return {"ONCOLOGY_IMAGE_DIGEST": image.rpartition("@")[2], "ONCOLOGY_IMAGE_MODEL_VERSION": version}


class Section(BaseModel):
    """A part of the record: every field optional, unknown fields kept as they were, its own fields left out when
    they hold nothing."""

    model_config = ConfigDict(extra="allow")

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        known = type(self).model_fields
        return {key: value for key, value in handler(self).items() if value is not None or key not in known}


class DataSection(Section):
    """The data trained on, all files together: the training CSV's source and what validation kept."""

    source: str | None = None
    etag: str | None = None
    sha256: str | None = None
    rows_read: int | None = None
    rows_kept: int | None = None


class CodeSection(Section):
    """The code revision and the dependency lock the model was trained with."""

    revision: str | None = None
    lock_sha256: str | None = None


class GateSection(Section):
    """The quality gate's decision (`passed`, its reasons and what it compared: `GateDecision`)."""

    passed: bool | None = None


class TestsSection(Section):
    """The test stage: tests run and coverage (%) per suite."""

    tests: dict[str, int] = Field(default_factory=dict)
    coverage: dict[str, float] = Field(default_factory=dict)


class ImageSection(Section):
    """The web-service image, pinned by digest."""

    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    reference: str | None = Field(default=None, description="<repository>@sha256:<digest>")


class DeploymentChange(Section):
    """One Deployment a deploy patched: the image it ran and the image it was given."""

    name: str | None = None
    previous_image: str | None = None
    new_image: str | None = None


class ClusterSection(Section):
    """Where the deploy ran and what it patched."""

    context: str | None = None
    namespace: str | None = None
    deployments: list[DeploymentChange] = Field(default_factory=list)


class VerificationSection(Section):
    """Whether the running service served this version and matched its golden set."""

    passed: bool | None = None
    summary: str | None = None


class RolloutSection(Section):
    """How the rollout ended: `rolled out` (and its detail) or `rolled back` (why, and what was restored)."""

    outcome: str | None = None
    detail: str | None = None
    image: str | None = None
    reason: str | None = None
    restored: str | None = None


class StageTimes(BaseModel):
    """When a stage ran and how it ended."""

    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float | None = None
    outcome: str = "running"


class DataFile(BaseModel):
    """One input data file as it was read: the S3 object, its ETag and the sha256 of its bytes."""

    bucket: str
    key: str
    etag: str
    sha256: str

    @property
    def uri(self) -> str:
        """`s3://bucket/key`."""
        return layout.uri(self.bucket, self.key)


class TrainingFile(DataFile):
    """A file a version trained on, with the rows validation read from it and kept."""

    rows_read: int
    rows_kept: int


def training_files(downloads: Sequence[s3store.CachedDownload], files: Sequence[FileSummary]) -> list[TrainingFile]:
    """The record's `training_data`: each downloaded file with its validation counts (`files`: the validation
    report's, the same files in the same order)."""
    read = [f.source for f in files]
    if read != [d.source.uri for d in downloads]:
        raise ValueError(f"training_files: the report's files {read} are not the downloads, in order")
    return [
        TrainingFile(
            bucket=d.source.bucket,
            key=d.source.key,
            etag=d.source.etag,
            sha256=f.sha256,
            rows_read=f.rows_read,
            rows_kept=f.rows_kept,
        )
        for d, f in zip(downloads, files, strict=True)
    ]


class OperatorAction(BaseModel):
    """A change of production a person asked for (a rollback, a release of a chosen version): who, when, why."""

    action: str = Field(description="rollback | release")
    to: str = Field(description="the version put in production")
    replaced: str | None = Field(default=None, description="the version it took out of production")
    at: datetime
    by: str = Field(description="the flow run that did it (its name and UI address)")
    reason: str | None = None


class ReleaseRecord(BaseModel):
    """Everything about one version's way to production (or why it stopped)."""

    model_version: str
    production: bool = Field(default=False, description="this version is the one production.json names now")
    promoting: bool = Field(default=False, description="a promotion began: its pointer write may not have landed")
    promoted_at: list[datetime] = Field(default_factory=list, description="every time it became production")
    superseded_by: str | None = None
    rolled_back: OperatorAction | None = Field(
        default=None, description="taken out of production by a rollback: a nightly never releases it again"
    )
    pinned: OperatorAction | None = Field(
        default=None, description="put in production by a person (a rollback to it, or model_version=)"
    )
    outcome: str = "running"
    fingerprint: dict[str, Any] = Field(default_factory=dict, description="the inputs (fingerprint.Fingerprint)")
    data: DataSection = Field(default_factory=DataSection)
    training_data: list[TrainingFile] = Field(
        default_factory=list, description="every file trained on: the training CSV, then the labelled cases by key"
    )
    code: CodeSection = Field(default_factory=CodeSection)
    training: dict[str, Any] = Field(default_factory=dict, description="the training configuration")
    metrics: dict[str, Any] = Field(default_factory=dict, description="hold-out estimates by metric")
    gate: GateSection = Field(default_factory=GateSection)
    tests: TestsSection = Field(default_factory=TestsSection)
    image: ImageSection = Field(default_factory=ImageSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    verification: VerificationSection = Field(default_factory=VerificationSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    monitoring: dict[str, Any] = Field(default_factory=dict, description="what the monitor found (room to grow)")
    flow_runs: dict[str, str] = Field(default_factory=dict, description="flow name -> Prefect UI URL or run id")
    stages: dict[str, StageTimes] = Field(default_factory=dict)

    def markdown(self) -> str:
        """The record for a person: the headline, each stage, then the whole JSON."""
        status = "PRODUCTION" if self.production else "not production"
        lines = [f"# Release {self.model_version}: {status}", "", f"Outcome: {self.outcome}", ""]
        lines += ["| stage | outcome | started | seconds |", "|---|---|---|---:|"]
        for stage, times in sorted(self.stages.items(), key=lambda item: _stage_order(item[0])):
            seconds = times.seconds
            if seconds is None and times.started_at and times.ended_at:
                seconds = (times.ended_at - times.started_at).total_seconds()
            started = f"{times.started_at:%H:%M:%S}" if times.started_at else "-"
            lines.append(f"| {stage} | {table_cell(times.outcome)} | {started} | {seconds or 0:.1f} |")
        if self.image.reference:
            lines += ["", f"Image: `{self.image.reference}`"]
        if self.verification.summary:
            lines += ["", f"Verification: {self.verification.summary}"]
        lines += ["", "```json", self.model_dump_json(indent=2), "```"]
        return "\n".join(lines)


def trained(
    *,
    passed: bool,
    data: DataSection,
    training_data: list[TrainingFile],
    code: CodeSection,
    training: dict[str, Any],
    metrics: dict[str, Any],
    gate: dict[str, Any],
) -> dict[str, Any]:
    """The change a training writes: where the model came from, its metrics and the gate's decision."""
    return {
        "outcome": "candidate: awaiting test, publish, deploy" if passed else "rejected by the gate",
        "data": data.model_dump(mode="json"),
        "training_data": [f.model_dump(mode="json") for f in training_data],
        "code": code.model_dump(mode="json"),
        "training": training,
        "metrics": metrics,
        "gate": GateSection.model_validate(gate).model_dump(mode="json"),
    }


def tested(tests: dict[str, int], coverage: dict[str, float]) -> dict[str, Any]:
    """The change the test stage writes: tests and coverage per suite."""
    return {"tests": TestsSection(tests=tests, coverage=coverage).model_dump(mode="json"), "outcome": "tested"}


def published(reference: str, tag: str) -> dict[str, Any]:
    """The change a publish writes: the image pinned by digest (`<repository>@sha256:...`) and its tag."""
    return {"image": _image(reference).model_copy(update={"tag": tag}).model_dump(mode="json")}


def _image(reference: str) -> ImageSection:
    """The image section of `<repository>@sha256:<hex>` (the tag is publish's to say)."""
    repository, digest = reference.split("@", 1)
    return ImageSection(repository=repository, digest=digest, reference=reference)


def rolled_out(cluster: ClusterSection, image: str, detail: str, summary: str) -> dict[str, Any]:
    """The change a verified deploy writes (the promotion writes `production` itself)."""
    return {
        "cluster": cluster.model_dump(mode="json"),
        "outcome": "released: verified serving, production",
        "rollout": RolloutSection(outcome="rolled out", detail=detail).model_dump(mode="json"),
        "image": _image(image).model_dump(mode="json"),
        "verification": VerificationSection(passed=True, summary=summary).model_dump(mode="json"),
    }


def rolled_back(
    cluster: ClusterSection, image: str, reason: str, restored: str | None, verified: VerificationSection | None
) -> dict[str, Any]:
    """The change a failed deploy writes: why, what was restored, and the verification when it was reached."""
    rollout = RolloutSection(outcome="rolled back", image=image, reason=reason, restored=restored)
    return {
        "cluster": cluster.model_dump(mode="json"),
        "outcome": f"failed at deploy: {reason}",
        "rollout": rollout.model_dump(mode="json"),
        "promoting": False,
        **({"verification": verified.model_dump(mode="json")} if verified is not None else {}),
    }


def failed(message: str) -> dict[str, Any]:
    """The change a run that stopped writes: `failed at <stage>: <reason>`."""
    return {"outcome": message}


def latest_with_fingerprint(s3: Any, bucket: str, digest: str) -> ReleaseRecord | None:
    """The record of the latest version trained from the inputs `digest`, or None."""
    data = s3store.get_bytes(s3, bucket, layout.fingerprint_key(digest))
    return None if data is None else read_record(s3, bucket, json.loads(data)["model_version"])


def remember_fingerprint(s3: Any, bucket: str, digest: str, version: str) -> s3store.S3Object:
    """Say that `version` is the latest version trained from the inputs `digest`."""
    return s3store.put_json(s3, bucket, layout.fingerprint_key(digest), {"model_version": version})


def read_record(s3: Any, bucket: str, version: str) -> ReleaseRecord | None:
    """A version's release record, or None when there is none."""
    data = s3store.get_bytes(s3, bucket, layout.release_key(version))
    return None if data is None else ReleaseRecord.model_validate_json(data)


def write_record(s3: Any, bucket: str, record: ReleaseRecord) -> s3store.S3Object:
    """Write the whole record (one PUT: never half-written)."""
    return s3store.put_json(s3, bucket, layout.release_key(record.model_version), record.model_dump(mode="json"))


def merge(record: ReleaseRecord, changes: dict[str, Any]) -> ReleaseRecord:
    """The record with `changes`: maps are merged key by key at every depth, anything else is replaced."""
    return ReleaseRecord.model_validate(
        _merged(record.model_dump(mode="json"), json.loads(json.dumps(changes, default=str)))
    )


def _merged(current: Any, change: Any) -> Any:
    if isinstance(current, dict) and isinstance(change, dict):
        return {**current, **{key: _merged(current.get(key), value) for key, value in change.items()}}
    return change


def lock_sha256(project_dir: Path) -> str | None:
    """The sha256 of the dependency lock (`uv.lock`), when there is one."""
    lock = project_dir / "uv.lock"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None


def promote(
    s3: Any, bucket: str, prefix: str, version: str, *, image: str, expected_etag: str, release: str
) -> s3store.S3Object:
    """Make `version` production, each step safe to retry: its record first (`promoting`), then the pointer by
    compare-and-swap on `expected_etag` (a retry of a write that landed is a success), then the records
    (`finish_promotion`). Once the pointer is written, the promotion is done: what is left is bookkeeping that
    `finish_promotion` completes, here or in the next run, never a reason to roll back."""
    objects = [s3store.head(s3, bucket, key) for key in modelstore.version_keys(s3, bucket, prefix, version)]
    record = read_record(s3, bucket, version) or ReleaseRecord(model_version=version)
    if not record.production:
        write_record(s3, bucket, merge(record, {"promoting": True}))
    pointer = modelstore.write_pointer(
        s3, bucket, prefix, version, objects, expected_etag=expected_etag, image=image, release=release
    )
    finish_promotion(s3, bucket, prefix)
    return pointer


def finish_promotion(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Make the release records say what the pointer says (idempotent): the version it names is production
    (`promoting` cleared, the pointer's time added to `promoted_at` once), the version it replaced
    (`previous_version`, from the pointer that was written, never re-read) is not. Returns what it changed: a
    promotion cut off after its pointer write is finished here, by whichever run comes next."""
    pointer = modelstore.read_pointer(s3, bucket, prefix)
    if pointer is None:
        return []
    changed: list[str] = []
    version, promoted = pointer.model_version, pointer.updated_at
    record = read_record(s3, bucket, version) or ReleaseRecord(model_version=version)
    if not record.production or record.promoting:
        times = record.promoted_at if promoted in record.promoted_at else [*record.promoted_at, promoted]
        change = {"production": True, "promoting": False, "superseded_by": None, "promoted_at": times}
        write_record(s3, bucket, merge(record, change))
        changed.append(f"{version}: production: true")
    previous = pointer.previous_version
    old = read_record(s3, bucket, previous) if previous and previous != version else None
    if old is not None and (old.production or old.superseded_by != version):
        write_record(s3, bucket, merge(old, {"production": False, "superseded_by": version}))
        changed.append(f"{old.model_version}: production: false, superseded by {version}")
    return changed


def _stage_order(stage: str) -> int:
    """A stage's place in the pipeline (train, test, publish, deploy; anything else after them)."""
    return STAGES.index(stage) if stage in STAGES else len(STAGES)
