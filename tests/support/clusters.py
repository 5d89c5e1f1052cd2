"""The Kubernetes stand-in prepared for flow tests: production serving in real containers, or scripted pods.

Shared by tests/flows/test_deploy.py and tests/faults: the same production, the same settings for the flow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncology_pipeline import s3store
from oncology_pipeline.cluster import WEBSERVICE_CONTAINER
from oncology_pipeline.settings import PipelineSettings
from standins.kube import DockerRuntime, KubeStandIn, ScriptedRuntime
from tests.support.invariant import DEPLOYMENT, production_annotations, seed_production
from tests.support.workloads import NODE_CREDENTIALS, Workloads, serve_image

NS = "oncology"
LABELS = {"app": "oncology-webservice", "team": "ml-platform"}
OLD = "registry.local/oncology-webservice@sha256:" + "a" * 64
NEW = "registry.local/oncology-webservice@sha256:" + "b" * 64


def kube_overrides(standin: KubeStandIn, tmp_path: Path, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings pointing a flow at the stand-in (through a kubeconfig, as a user has one) on top of `base`."""
    return {
        **(base or {}),
        "kubeconfig": str(standin.write_kubeconfig(tmp_path / "kubeconfig.yaml")),
        "kube_context": "kube-standin",
        "kube_namespace": NS,
        "rollout_poll_seconds": 0.2,
        "rollout_timeout_seconds": 90,
        "work_dir": str(tmp_path / "work"),
    }


def image_of(standin: KubeStandIn, name: str = DEPLOYMENT) -> str:
    """The web-service container's image in a Deployment."""
    containers = standin.deployment(NS, name)["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] == WEBSERVICE_CONTAINER))


def store_candidate(s3: Any, settings: PipelineSettings, version: str, bundle: Path) -> None:
    """A candidate under models/<version>/, as the train stage leaves it."""
    s3store.upload_directory(s3, settings.model_bucket, f"{settings.model_prefix}/{version}", bundle)


@contextmanager
def serving_standin(
    s3: Any, settings: PipelineSettings, workloads: Workloads, candidate_bundle: Path
) -> Iterator[KubeStandIn]:
    """The previous version in production (S3) and serving (deployments/webservice.yaml, 2 real replicas);
    the current model stored as a candidate."""
    previous = seed_production(s3, settings, workloads.previous_bundle, workloads.previous)
    store_candidate(s3, settings, workloads.current_version, candidate_bundle)
    runtime = DockerRuntime(credentials=lambda registry: NODE_CREDENTIALS)
    with KubeStandIn("flow-test-token", runtime=runtime, step_interval=0.1, backoff=1.0) as server:
        serve_image(server, NS, workloads.previous, annotations=production_annotations(settings, previous))
        yield server


@dataclass(frozen=True)
class Scripted:
    """A stand-in with scripted containers, settings for it, a stored candidate version and production's
    version (None: no production yet)."""

    standin: KubeStandIn
    overrides: dict[str, Any]
    version: str
    production: str | None


@contextmanager
def scripted_standin(
    s3: Any,
    settings: PipelineSettings,
    overrides: dict[str, Any],
    tmp_path: Path,
    candidate: tuple[str, Path],
    *,
    production_bundle: Path | None = None,
    deployments: tuple[str, ...] = (DEPLOYMENT,),
) -> Iterator[Scripted]:
    """Refusals and timeouts that need no real container: Deployments on OLD (annotated as production when
    `production_bundle` is seeded as production serving OLD), the candidate stored; NEW never gets ready."""
    version, bundle = candidate
    store_candidate(s3, settings, version, bundle)
    production = seed_production(s3, settings, production_bundle, OLD) if production_bundle else None
    runtime = ScriptedRuntime(unpullable={NEW})  # the spec's 600 s progress deadline is far away
    with KubeStandIn("flow-test-token", runtime=runtime, step_interval=0.02) as server:
        for name in deployments:
            server.add_manifest(
                {
                    "metadata": {
                        "name": name,
                        "labels": dict(LABELS),
                        "annotations": production_annotations(settings, production) if production else {},
                    },
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": dict(LABELS)},
                        "template": {
                            "metadata": {"labels": dict(LABELS)},
                            "spec": {"containers": [{"name": WEBSERVICE_CONTAINER, "image": OLD}]},
                        },
                    },
                },
                namespace=NS,
            )
        yield Scripted(server, kube_overrides(server, tmp_path, overrides), version, production)
