"""Local stand-ins for AWS (moto server), ECR's registry (the local registry) and EKS (the Kubernetes stand-in,
whose pods are Docker containers, unless a kubeconfig context is configured), exposed to the flows as ONCOLOGY_*
settings."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.buckets import create_buckets, seed_training_data
from oncology_model.datamodel import EXAMPLE_BENIGN
from oncology_model.sample_data import sample_data_csv
from oncology_pipeline import aws
from oncology_pipeline.registry import ecr_login
from oncology_pipeline.settings import PipelineSettings
from standins.aws import moto_server
from standins.kube import DockerRuntime, KubeStandIn
from standins.kube.dockerruntime import host_gateway_address

LOCAL_REGISTRY = "127.0.0.1:5000"
LOCAL_BASE_IMAGE = "oncology-base:bookworm"
STANDIN_TOKEN = "demo-standin-token"
MANIFEST = Path(__file__).resolve().parents[1] / "deployments" / "webservice.yaml"
#: The Secret the manifest's pods take their prediction-log credentials from (envFrom, optional).
LOG_SECRET = "oncology-prediction-log"
#: The pods write their prediction log this often (the service's default, 30 s, is long for a demo).
LOG_FLUSH_SECONDS = 2
#: The manifest's progressDeadlineSeconds is 300; the stand-in gives up sooner so that a failed demo rollout
#: is rolled back within minutes.
PROGRESS_DEADLINE = 60.0
JSON = dict[str, Any]


@dataclass
class LocalStack:
    """Settings for the flows (as ONCOLOGY_* variables), what stands in for what, and what cannot run."""

    env: dict[str, str] = field(default_factory=dict)
    stand_ins: list[str] = field(default_factory=list)
    publish_skipped: str | None = None
    service_url: str | None = None


def _registry_answers(address: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # a registry that wants a login: the real ECR path
    except OSError:
        return False
    return True


def _docker_problem() -> str | None:
    """Why the Docker engine cannot build here, or None when it can."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception as exc:
        return f"no Docker engine is reachable ({type(exc).__name__}); `make provision` installs and starts one"
    if not _registry_answers(LOCAL_REGISTRY):
        return f"no registry answers at {LOCAL_REGISTRY}; `make provision` starts the local one"
    return None


def _base_image_present() -> bool:
    import docker

    try:
        docker.from_env(timeout=5).images.get(LOCAL_BASE_IMAGE)
    except Exception:
        return False
    return True


def _relabel(team: str) -> Callable[[JSON], None]:
    """Set every `team` label and selector of a manifest document to `team`."""

    def edit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "team" and isinstance(value, str):
                    node[key] = team
                else:
                    edit(value)
        elif isinstance(node, list):
            for item in node:
                edit(item)

    return edit


def _log_secret(settings: PipelineSettings) -> JSON:
    """The Secret that points the pods' prediction log at the local S3 (moto, through the Docker bridge's
    gateway: `host.docker.internal` in the pods); on EKS the ServiceAccount's IAM role takes its place."""
    port = (settings.s3_endpoint_url or "").rsplit(":", 1)[-1]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": LOG_SECRET},
        "type": "Opaque",
        "stringData": {
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
            "AWS_ENDPOINT_URL_S3": f"http://host.docker.internal:{port}",
            "ONCOLOGY_LOG_FLUSH_SECONDS": str(LOG_FLUSH_SECONDS),
        },
    }


def _start_cluster(
    running: ExitStack, settings: PipelineSettings, work_dir: Path, standin_port: int, forward_port: int
) -> tuple[dict[str, str], str, str]:
    """The Kubernetes stand-in with deployments/webservice.yaml applied: env, description, service URL."""
    ecr = aws.client(settings, "ecr")

    def node_credentials(registry: str) -> dict[str, str] | None:  # what the node's ECR credential provider does
        return ecr_login(ecr, LOCAL_REGISTRY).auth_config() if registry == LOCAL_REGISTRY else None

    runtime = DockerRuntime(credentials=node_credentials)
    standin = running.enter_context(  # its CA is kept in the work dir: a restart keeps the kubeconfig valid
        KubeStandIn(
            STANDIN_TOKEN,
            runtime=runtime,
            port=standin_port,
            progress_deadline=PROGRESS_DEADLINE,
            ca_dir=work_dir / "kube-ca",
        )
    )
    standin.add_manifest(_log_secret(settings), namespace=settings.kube_namespace)
    standin.apply(MANIFEST, settings.kube_namespace, edit=_relabel(settings.team))
    kubeconfig = standin.write_kubeconfig(work_dir / "kubeconfig.yaml", namespace=settings.kube_namespace)
    try:
        url = standin.port_forward(settings.kube_namespace, "oncology-webservice", "http", forward_port)
    except OSError:  # the port is taken: any free one
        url = standin.port_forward(settings.kube_namespace, "oncology-webservice", "http")
    env = {
        "ONCOLOGY_KUBECONFIG": str(kubeconfig),
        "ONCOLOGY_KUBE_CONTEXT": "kube-standin",
        "ONCOLOGY_ROLLOUT_POLL_SECONDS": "1",
    }
    description = (
        f"Kubernetes: the local Kubernetes STAND-IN at {standin.url} (not a real cluster: its pods are Docker "
        f"containers; deployments/webservice.yaml applied, progress deadline {PROGRESS_DEADLINE:g} s; "
        "set ONCOLOGY_KUBE_CONTEXT to use a real one); with kubectl:\n"
        f"      export KUBECONFIG={kubeconfig}\n"
        f"      kubectl get pods -n {settings.kube_namespace}"
    )
    return env, description, url


@contextmanager
def local_stack(
    work_dir: Path, moto_port: int | None = None, standin_port: int = 0, forward_port: int = 8080
) -> Iterator[LocalStack]:
    """Start the stand-ins, create the buckets, seed the real data set; stop everything on exit."""
    stack = LocalStack()
    with ExitStack() as running:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto takes any key; real ones aren't needed
            stack.env[key] = os.environ.setdefault(key, "local-stand-in")
        stack.publish_skipped = _docker_problem()
        # Pods (Docker containers) write the prediction log to it: it listens on the Docker bridge's gateway then
        address = host_gateway_address() if stack.publish_skipped is None else "127.0.0.1"
        endpoint = running.enter_context(moto_server(moto_port, address))
        stack.env |= {
            "ONCOLOGY_S3_ENDPOINT_URL": endpoint,
            "ONCOLOGY_AWS_ENDPOINT_URL": endpoint,
            "ONCOLOGY_WORK_DIR": str(work_dir),
        }
        stack.stand_ins.append(f"AWS S3/ECR/STS: moto server at {endpoint}")
        settings = PipelineSettings(s3_endpoint_url=endpoint, work_dir=work_dir)
        s3 = aws.client(settings, "s3")
        create_buckets(s3, settings)
        seed_training_data(s3, settings, sample_data_csv())

        if stack.publish_skipped is None:
            stack.env["ONCOLOGY_REGISTRY_ADDRESS"] = LOCAL_REGISTRY
            stack.stand_ins.append(f"ECR registry: the local registry at {LOCAL_REGISTRY} (ECR token from moto)")
            if _base_image_present():
                stack.env["ONCOLOGY_BASE_IMAGE"] = LOCAL_BASE_IMAGE

        configured = PipelineSettings()  # the environment and .env
        if configured.kube_context or configured.kubeconfig or configured.eks_cluster_name:
            stack.stand_ins.append("Kubernetes: the configured cluster (ONCOLOGY_KUBE_CONTEXT / KUBECONFIG / EKS)")
        elif stack.publish_skipped is None:
            cluster_settings = PipelineSettings(aws_endpoint_url=endpoint, s3_endpoint_url=endpoint)
            env, description, stack.service_url = _start_cluster(
                running, cluster_settings, work_dir, standin_port, forward_port
            )
            stack.env |= env
            stack.stand_ins.append(description)
        yield stack


def describe_service(url: str) -> list[str]:
    """Where the deployed web service answers (as `kubectl port-forward` would expose it), and what it serves."""
    try:
        with urllib.request.urlopen(f"{url}/v1/model", timeout=10) as answer:
            serving = f"serves model {json.loads(answer.read())['model_version']}"
    except (OSError, ValueError, KeyError) as exc:
        serving = f"does not answer yet ({exc}): a nightly run deploys the first model"
    body = json.dumps(EXAMPLE_BENIGN, separators=(",", ":"))
    return [
        f"Web service (port-forward to the stand-in's Service oncology-webservice): {url} {serving}",
        f"  curl -s {url}/v1/predictions -H 'content-type: application/json' -d '{body}'",
    ]
