"""Deploy stage: the seed's `kubectl set image deployments -l app=oncology-webservice,team=<team> ...`,
pinned by digest, watched like `kubectl rollout status`, and rolled back when it fails.

Every Kubernetes call waits at most `kube_request_timeout_seconds`. Putting images back (a half-done set_image, a
rollback) runs inside `shielded()`, so that no Prefect cancellation cuts it short.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from prefect import get_run_logger, task
from prefect._internal.concurrency.cancellation import shield
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from oncology_model.classifier import Classifier
from oncology_pipeline import cluster, eks, kubeapi, rolloutstatus, verification
from oncology_pipeline.errors import PipelineError, RolloutFailed
from oncology_pipeline.reports import deploy_markdown
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client, aws_session
from tasks.policy import NETWORK_RETRIES


@contextmanager
def shielded() -> Iterator[None]:
    """Run the block to its end even if a Prefect cancellation arrives meanwhile: it is raised as the block ends
    (by an alarm) or right after (by a watcher thread, unless the cancelled scope has ended by then).

    Prefect 3.9 delivers a flow's timeout to a synchronous flow as a CancelledError (a BaseException): by SIGALRM
    when the flow runs in the main thread (`AlarmCancelScope`), else injected into its thread by a watcher thread
    (`WatcherThreadCancelScope`: a nested flow such as the pipeline's deploy stage); a task's timeout and a lost
    concurrency lease (`concurrency(..., strict=True)`) arrive the same way. Each scope delivers once, so the
    timeout that sent a deploy into its `except BaseException` path cannot land again in the rollback there; but a
    rollback can still be cut short by another one (the lease lost, the enclosing pipeline's timeout, or this timeout
    when the rollback follows a failed step). Both delivery paths wait for the thread's shield
    (`prefect._internal.concurrency.cancellation.shield`, Prefect's own guard for these scopes; not a public API,
    hence this one place). Signals (SIGTERM, Ctrl-C) are not held back.
    """
    with shield():
        yield


@task(name="connect_cluster", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def connect_cluster(settings: PipelineSettings) -> ApiClient:
    """An API client for EKS (describe_cluster + a refreshed bearer token), a kubeconfig context, or, in a pod
    with neither configured, the pod's service account."""
    log = get_run_logger()
    if settings.eks_cluster_name:
        api = eks.connect_eks(aws_client(settings, "eks"), aws_session(settings), settings.eks_cluster_name)
        log.info("connected to EKS cluster %s at %s", settings.eks_cluster_name, api.configuration.host)
        return api
    if not (settings.kubeconfig or settings.kube_context) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        api = kubeapi.connect_in_cluster()
        log.info("connected to %s with the pod's service account", api.configuration.host)
        return api
    api = kubeapi.connect_kubeconfig(settings.kubeconfig, settings.kube_context)
    log.info("connected to %s (kubeconfig context %s)", api.configuration.host, settings.kube_context or "current")
    return api


@task(name="set_image", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def set_image(
    api: ApiClient,
    settings: PipelineSettings,
    image: str,
    annotations: Mapping[str, str],
    restore: cluster.Restore | None,
    env: Mapping[str, str],
) -> list[cluster.ImageChange]:
    """Patch container oncology-webservice of every matching Deployment to `image`, with `annotations` on the
    Deployments and `env` on the container in the same patch (all or none, even when interrupted); a rollback puts
    `restore` back (None: what ran)."""
    selector = cluster.webservice_selector(settings.team)
    changes = cluster.set_image(
        AppsV1Api(api),
        settings.kube_namespace,
        selector,
        cluster.WEBSERVICE_CONTAINER,
        image,
        annotations,
        restore,
        env=env,
        request_timeout=settings.kube_request_timeout_seconds,
        protect=shielded,
    )
    log = get_run_logger()
    for change in changes:
        log.info("deployment %s: %s (way back: %s)", change.deployment, change.new_image, change.previous_image)
    return changes


@task(name="wait_for_rollout", cache_policy=NO_CACHE)
def wait_for_rollout(api: ApiClient, settings: PipelineSettings, changes: list[cluster.ImageChange]) -> str:
    """Wait until every patched Deployment has rolled out (RolloutFailed on a passed deadline or timeout,
    naming why the pods are not ready)."""
    log = get_run_logger()
    apps, names = AppsV1Api(api), [c.deployment for c in changes]
    try:
        rolled_out = rolloutstatus.wait_for_rollout(
            apps,
            settings.kube_namespace,
            names,
            settings.rollout_timeout_seconds,
            settings.rollout_poll_seconds,
            log.info,
            request_timeout=settings.kube_request_timeout_seconds,
        )
    except RolloutFailed as failure:
        try:
            problems = rolloutstatus.pod_problems(
                CoreV1Api(api),
                apps,
                settings.kube_namespace,
                names,
                request_timeout=settings.kube_request_timeout_seconds,
            )
        except PipelineError as unreadable:
            problems = [f"(the pods could not be read: {unreadable})"]
        raise RolloutFailed(f"{failure} {' '.join(problems) or 'No pod reported a problem.'}") from failure
    described = ", ".join(f"{name} (revision {rolloutstatus.revision(d)})" for name, d in rolled_out.items())
    return f"rolled out: {described} run {changes[0].new_image}"


@task(name="rollback", cache_policy=NO_CACHE)
def rollback(api: ApiClient, settings: PipelineSettings, changes: list[cluster.ImageChange]) -> str:
    """Put the previous images back and wait for that rollout too, shielded from cancellation."""
    log = get_run_logger()
    restored = cluster.rollback(
        AppsV1Api(api),
        settings.kube_namespace,
        changes,
        cluster.WEBSERVICE_CONTAINER,
        timeout=settings.rollout_timeout_seconds,
        poll=settings.rollout_poll_seconds,
        log=log.info,
        request_timeout=settings.kube_request_timeout_seconds,
        protect=shielded,
    )
    summary = ", ".join(f"{c.deployment} runs {c.new_image} again" for c in restored) or "nothing to restore"
    log.warning("rolled back: %s", summary)
    return summary


@task(name="report_deploy", cache_policy=NO_CACHE)
def report_deploy(
    version: str, image: str, cluster_changes: dict[str, Any], rollout: dict[str, Any], verified: str
) -> None:
    """The `deploy` artifact: Deployments with their old and new image, rollout, verification, rollback."""
    create_markdown_artifact(
        markdown=deploy_markdown(version, image, cluster_changes, rollout, verified),
        key="deploy",
        description=f"Deploy {version}: {rollout.get('outcome', '-')}",
    )


@task(name="verify_release", cache_policy=NO_CACHE)
def verify_release(api: ApiClient, settings: PipelineSettings, version: str, bundle_dir: Path) -> str:
    """Through the Service proxy: every pod asked serves `version`, and the bundle's golden set gets its answers."""
    golden = [(case.tumor, case.probability_malignant) for case in Classifier.from_bundle(bundle_dir).metadata.golden]
    service = f"{settings.kube_service}:{settings.kube_service_port}"
    summary = verification.verify_service(
        api,
        settings.kube_namespace,
        service,
        version,
        golden,
        replicas=2,
        request_timeout=settings.kube_request_timeout_seconds,
    )
    get_run_logger().info("verified: %s", summary)
    return summary
