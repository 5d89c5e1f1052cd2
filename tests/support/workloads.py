"""Images for the stand-in's real pods, pushed to the local registry: two model versions and one that crashes."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from pydantic import SecretStr

from oncology_pipeline.buildcontext import prepare_build_context
from oncology_pipeline.image import build_image
from oncology_pipeline.registry import RegistryCredentials, push_image
from standins.kube import KubeStandIn
from standins.kube.dockerruntime import OWNER_LABEL
from tests.support import docker_env

PROJECT_DIR = Path(__file__).resolve().parents[2]
MANIFEST = PROJECT_DIR / "deployments" / "webservice.yaml"
NODE_CREDENTIALS = {"username": docker_env.MOTO_ECR_USER, "password": docker_env.MOTO_ECR_PASSWORD}
JSON = dict[str, Any]


@dataclass(frozen=True)
class Workloads:
    """Pinned references (`registry/repo@sha256:...`) in the local registry, and what each serves."""

    current: str
    current_version: str
    previous: str
    previous_version: str
    crashing: str
    missing: str
    previous_bundle: Path


def _build_derived(client: Any, base: str, files: dict[str, bytes], tag: str) -> str:
    """`FROM base` + the files copied over /opt/model/: an image whose bundle is replaced."""
    dockerfile = f"FROM {base}\nCOPY model/ /opt/model/\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in {"Dockerfile": dockerfile, **{f"model/{k}": v for k, v in files.items()}}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    image, _ = client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True)
    return str(image.id)


def push_workloads(
    client: Any, registry: str, current_id: str, current_version: str, previous_bundle: Path, work: Path
) -> Workloads:
    """Build the previous-version and crashing images, push all three, and name a digest nobody pushed."""
    repository = f"{registry}/standin-pods-{secrets.token_hex(4)}"
    credentials = RegistryCredentials(registry, docker_env.MOTO_ECR_USER, SecretStr(docker_env.MOTO_ECR_PASSWORD))
    context = prepare_build_context(PROJECT_DIR, previous_bundle, work / "context")
    previous_version = str(json.loads((previous_bundle / "metadata.json").read_text())["model_version"])
    previous = build_image(
        client,
        context,
        f"{repository}:previous",
        {"BASE_IMAGE": docker_env.BASE_IMAGE, "MODEL_VERSION": previous_version},
        lambda line: None,
    )
    crashing_id = _build_derived(client, current_id, {"metadata.json": b"{ not json"}, f"{repository}:crashing")

    def push(tag: str, source: str) -> str:
        digest = push_image(client, repository, tag, credentials, lambda line: None, source_image=source)
        return f"{repository}@{digest}"

    return Workloads(
        current=push("current", current_id),
        current_version=current_version,
        previous=push("previous", previous.id),
        previous_version=previous_version,
        crashing=push("crashing", crashing_id),
        missing=f"{repository}@sha256:{secrets.token_hex(32)}",
        previous_bundle=previous_bundle,
    )


def fast_probes(document: JSON) -> None:
    """The real manifest with probes every second, a 1-s preStop and a 20 s progress deadline (tests wait less)."""
    if document.get("kind") != "Deployment":
        return
    document["spec"]["progressDeadlineSeconds"] = 20
    container = document["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = "Always"  # every pod pulls by digest with the node's credentials
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        container[probe]["periodSeconds"] = 1
    container["lifecycle"]["preStop"]["sleep"]["seconds"] = 1


def one_replica(document: JSON) -> None:
    """`fast_probes`, and one replica: a rolling update still surges a new pod and retires the old one (tests of
    the whole pipeline; the deploy and fault tests keep the manifest's two)."""
    fast_probes(document)
    if document.get("kind") == "Deployment":
        document["spec"]["replicas"] = 1


def serve_image(
    standin: KubeStandIn, namespace: str, image: str, edit: Any = fast_probes, annotations: dict[str, str] | None = None
) -> None:
    """Apply deployments/webservice.yaml with `image` (and Deployment `annotations`) and wait until it serves."""

    def with_image(document: JSON) -> None:
        edit(document)
        if document.get("kind") == "Deployment":
            document["spec"]["template"]["spec"]["containers"][0]["image"] = image
            document["metadata"].setdefault("annotations", {}).update(annotations or {})

    standin.apply(MANIFEST, namespace, edit=with_image)
    if not standin.wait_until(lambda: standin.controller.complete(namespace, "oncology-webservice"), 120):
        raise AssertionError(f"{image} did not roll out: {standin.pods(namespace)}")


def model_version_served(api: ApiClient, namespace: str) -> str:
    """`GET /v1/model` through the Service proxy, as a check on EKS would ask."""
    answer: Any = CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
        "oncology-webservice:http", namespace, "v1/model", _preload_content=False
    )
    return str(json.loads(answer.data)["model_version"])


def standin_containers(client: Any, standin: KubeStandIn) -> list[Any]:
    """The Docker containers this stand-in runs once the pods it is deleting have terminated (preStop, SIGTERM)."""
    assert standin.wait_for_terminations(60), "pods still terminating after 60 s"
    owner = getattr(standin.runtime, "owner", "")
    return list(client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"}, ignore_removed=True))
