"""Observe first: production's records against what the cluster runs and what its Service serves.

The production pointer names the serving version and the image (by digest) it was verified with; the release
record it names says the same. Each Deployment of the web service has an image and the annotations a verified
deploy wrote on it; the Service answers `GET /v1/model` with the model it serves. Where these disagree there is a
*drift*. Nothing here reads or changes anything (and nothing knows Prefect): the flows observe, report, alert and,
with `reconcile: repair`, roll production's recorded image out again. The pointer never moves to what was found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from kubernetes.client import V1Deployment

from oncology_pipeline.cluster import Restore, container_image, is_pinned
from oncology_pipeline.kubeapi import deployment_name
from oncology_pipeline.modelstore import ProductionPointer
from oncology_pipeline.releases import (
    ANNOTATION_VERSION,
    ReleaseRecord,
    deployment_annotations,
    record_uri,
    serving_env,
)

Kind = Literal["record", "image", "annotation", "served"]
Mode = Literal["alert", "repair"]
#: What a rollout of production's recorded image can put right; a record that disagrees needs a person.
_IN_THE_CLUSTER: frozenset[Kind] = frozenset({"image", "annotation", "served"})


@dataclass(frozen=True)
class Production:
    """What the records say serves: the pointer's version, the image it was verified with, its release record."""

    version: str
    image: str | None
    release: str

    @property
    def annotations(self) -> dict[str, str]:
        """The annotations a verified deploy of this version leaves on every Deployment."""
        return deployment_annotations(self.version, self.release)


@dataclass(frozen=True)
class Running:
    """One Deployment of the web service as the cluster has it: its image and its model-version annotation."""

    deployment: str
    image: str | None
    version: str | None
    replicas: int


@dataclass(frozen=True)
class Served:
    """What the Service (`name:port`) answered on `GET /v1/model`: the model versions, or why it did not answer."""

    service: str
    versions: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Drift:
    """One disagreement: its kind, where it is, what production's records say and what was found."""

    kind: Kind
    where: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.where}: found {self.found}, production's records say {self.expected}"


@dataclass(frozen=True)
class Repair:
    """Production's recorded image to roll out again, the annotations to write, and the version it must serve."""

    version: str
    image: str
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Decision:
    """What a run does about an observation: roll production out again (`repair`), or not; said in one line."""

    text: str
    repair: Repair | None = None


@dataclass(frozen=True)
class Observation:
    """The world as a run found it, and where it disagrees with production's records."""

    production: Production | None
    deployments: tuple[Running, ...]
    served: Served | None
    drifts: tuple[Drift, ...]
    pointer_etag: str

    def summary(self) -> str:
        """One line for the log and the run's summary."""
        count = f"{len(self.deployments)} Deployment(s)"
        if self.production is None:
            return f"no production yet: nothing to compare {count} with"
        if not self.drifts:
            return f"in sync: {count} run production {self.production.version} as recorded, and the Service serves it"
        return f"{len(self.drifts)} drift(s) from production {self.production.version}: " + "; ".join(
            str(drift) for drift in self.drifts
        )

    def restore_for(self, image: str) -> Restore | None:
        """What a failed rollout of `image` puts back: production's recorded image and annotations (None when there is
        no production yet, or `image` is production's own: then what ran before goes back)."""
        production = self.production
        if production is None or production.image is None or production.image == image:
            return None
        return Restore(production.image, production.annotations, serving_env(production.image, production.version))


def running(deployment: V1Deployment, container: str) -> Running:
    """A Deployment as the observation keeps it."""
    annotations = (deployment.metadata.annotations if deployment.metadata else None) or {}
    replicas = deployment.spec.replicas if deployment.spec and deployment.spec.replicas is not None else 1
    return Running(
        deployment_name(deployment),
        container_image(deployment, container),
        annotations.get(ANNOTATION_VERSION),
        replicas,
    )


def observe(
    pointer: ProductionPointer | None,
    pointer_etag: str,
    record: ReleaseRecord | None,
    bucket: str,
    deployments: Sequence[Running],
    served: Served | None,
) -> Observation:
    """Compare the pointer and its release record (in `bucket`) with the Deployments and the Service's answer."""
    if pointer is None:
        return Observation(None, tuple(deployments), served, (), pointer_etag)
    recorded = record.image.reference if record else None
    production = Production(
        pointer.model_version, pointer.image or recorded, pointer.release or record_uri(bucket, pointer.model_version)
    )
    drifts = [*_records(production, pointer, record, recorded), *_cluster(production, deployments, served)]
    return Observation(production, tuple(deployments), served, tuple(drifts), pointer_etag)


def _records(
    production: Production, pointer: ProductionPointer, record: ReleaseRecord | None, recorded: str | None
) -> list[Drift]:
    """Where the pointer and the release record it names disagree."""
    where = f"release record {production.release}"
    if record is None:
        return [Drift("record", where, "a record of the version the pointer names", "none")]
    drifts = []
    if not record.production:
        drifts.append(Drift("record", where, "production: true", "production: false"))
    if pointer.image and recorded and recorded != pointer.image:
        drifts.append(Drift("record", f"{where}: image", f"the pointer's {pointer.image}", recorded))
    if production.image is None:
        drifts.append(Drift("record", "production pointer: image", "an image pinned by digest", "none recorded"))
    return drifts


def _cluster(production: Production, deployments: Sequence[Running], served: Served | None) -> list[Drift]:
    """Where the Deployments and the Service disagree with production."""
    if not deployments:
        return [Drift("image", "cluster", "the web service's Deployments", "no matching Deployment")]
    drifts = []
    for found in deployments:
        where = f"deployment {found.deployment}"
        if production.image and found.image != production.image:
            drifts.append(
                Drift("image", f"{where}: image", production.image, found.image or "no web-service container")
            )
        if found.version != production.version:
            drifts.append(
                Drift("annotation", f"{where}: {ANNOTATION_VERSION}", production.version, found.version or "none")
            )
    if served is not None:
        where = f"service {served.service}: GET /v1/model"
        if served.error is not None:
            drifts.append(Drift("served", where, production.version, f"no answer ({served.error})"))
        drifts += [Drift("served", where, production.version, v) for v in served.versions if v != production.version]
    return drifts


def decide(observation: Observation, mode: Mode, deploying: str | None = None) -> Decision:
    """Repair (roll production's recorded image out again and verify it) when there is a drift that a rollout puts
    right and `mode` is `repair`; a run that deploys `deploying` replaces what runs anyway."""
    production = observation.production
    if production is None:
        return Decision("no production yet: nothing to compare with")
    if not observation.drifts:
        return Decision("in sync: nothing to do")
    if deploying is not None:
        return Decision(f"this run deploys {deploying}; if that fails, production's recorded image goes back")
    if mode == "alert":
        return Decision("alert only (reconcile: alert): nothing was changed")
    kept = sorted({d.kind for d in observation.drifts} - _IN_THE_CLUSTER)
    if kept or production.image is None or not is_pinned(production.image) or not observation.deployments:
        why = f"the {', '.join(kept)} drift needs a person" if kept else "no pinned image or no Deployment to roll out"
        return Decision(f"alert only: cannot repair ({why})")
    return Decision(
        f"repair: roll production's recorded image {production.image} out again and verify it; the pointer does not "
        "move",
        Repair(production.version, production.image, production.annotations),
    )
