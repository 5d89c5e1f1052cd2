"""Local stand-ins for AWS (moto server), ECR's registry (the local registry) and EKS (the Kubernetes-API
stand-in, unless a kubeconfig context is configured), exposed to the flows as ONCOLOGY_* settings."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from oncology_model.sample_data import sample_data_csv
from oncology_pipeline import aws
from oncology_pipeline.localstack import create_buckets, moto_server, seed_training_data
from oncology_pipeline.settings import PipelineSettings

LOCAL_REGISTRY = "127.0.0.1:5000"
LOCAL_BASE_IMAGE = "oncology-base:bookworm"
STANDIN_TOKEN = "demo-standin-token"


@dataclass
class LocalStack:
    """Settings for the flows (as ONCOLOGY_* variables), what stands in for what, and what cannot run."""

    env: dict[str, str] = field(default_factory=dict)
    stand_ins: list[str] = field(default_factory=list)
    publish_skipped: str | None = None


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


@contextmanager
def local_stack(work_dir: Path, moto_port: int | None = None, standin_port: int = 0) -> Iterator[LocalStack]:
    """Start the stand-ins, create the buckets, seed the real data set; stop everything on exit."""
    stack = LocalStack()
    with ExitStack() as running:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # moto takes any key; real ones aren't needed
            stack.env[key] = os.environ.setdefault(key, "local-stand-in")
        endpoint = running.enter_context(moto_server(moto_port))
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

        stack.publish_skipped = _docker_problem()
        if stack.publish_skipped is None:
            stack.env["ONCOLOGY_REGISTRY_ADDRESS"] = LOCAL_REGISTRY
            stack.stand_ins.append(f"ECR registry: the local registry at {LOCAL_REGISTRY} (ECR token from moto)")
            if _base_image_present():
                stack.env["ONCOLOGY_BASE_IMAGE"] = LOCAL_BASE_IMAGE

        configured = PipelineSettings()  # the environment and .env
        if configured.kube_context or configured.kubeconfig or configured.eks_cluster_name:
            stack.stand_ins.append("Kubernetes: the configured cluster (ONCOLOGY_KUBE_CONTEXT / KUBECONFIG / EKS)")
        else:
            from tests.support.kube_standin import KubeStandIn, seed_demo

            standin = running.enter_context(KubeStandIn(STANDIN_TOKEN, port=standin_port, step_interval=0.1))
            seed_demo(standin, settings.team, settings.kube_namespace)
            kubeconfig = standin.write_kubeconfig(work_dir / "kubeconfig.yaml", namespace=settings.kube_namespace)
            stack.env |= {
                "ONCOLOGY_KUBECONFIG": str(kubeconfig),
                "ONCOLOGY_KUBE_CONTEXT": "kube-standin",
                "ONCOLOGY_ROLLOUT_POLL_SECONDS": "0.5",
            }
            stack.stand_ins.append(
                f"Kubernetes: the local Kubernetes-API STAND-IN at {standin.url} (not a real cluster; "
                "set ONCOLOGY_KUBE_CONTEXT to use one)"
            )
        yield stack
