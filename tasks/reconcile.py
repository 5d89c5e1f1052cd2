"""Observe first: production's records, the cluster and the Service as they are; the `reconcile` artifact and the
alert when they disagree."""

from __future__ import annotations

from kubernetes.client import ApiClient, AppsV1Api
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from oncology_pipeline import cluster, kubeapi, modelstore, reconcile, releases, verification
from oncology_pipeline.errors import VerificationFailed
from oncology_pipeline.events import CLUSTER_DRIFT_EVENT, version_resource
from oncology_pipeline.reports import reconcile_markdown
from oncology_pipeline.settings import PipelineSettings
from tasks.clients import aws_client
from tasks.policy import NETWORK_RETRIES

#: Tries per question to the Service: an observation reports a Service that does not answer, it does not wait for it.
SERVICE_ATTEMPTS = 2


@task(name="observe", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def observe(api: ApiClient, settings: PipelineSettings) -> reconcile.Observation:
    """The production pointer, the release record it names, each matching Deployment's image and annotations, and
    (when there is production) the model the Service serves."""
    s3 = aws_client(settings, "s3")
    pointer, etag = modelstore.read_pointer_etag(s3, settings.model_bucket, settings.model_prefix)
    record = releases.read_record(s3, settings.model_bucket, pointer.model_version) if pointer else None
    selector = cluster.webservice_selector(settings.team)
    found = kubeapi.list_deployments(
        AppsV1Api(api), settings.kube_namespace, selector, request_timeout=settings.kube_request_timeout_seconds
    )
    deployments = [reconcile.running(d, cluster.WEBSERVICE_CONTAINER) for d in found]
    served = _served(api, settings, sum(d.replicas for d in deployments)) if pointer and deployments else None
    observation = reconcile.observe(pointer, etag, record, settings.model_bucket, deployments, served)
    get_run_logger().info("observed: %s", observation.summary())
    return observation


def _served(api: ApiClient, settings: PipelineSettings, replicas: int) -> reconcile.Served:
    """The model versions the Service answers with, or why it did not answer."""
    service = f"{settings.kube_service}:{settings.kube_service_port}"
    try:
        versions = verification.served_versions(
            api,
            settings.kube_namespace,
            service,
            replicas=replicas,
            attempts=SERVICE_ATTEMPTS,
            request_timeout=settings.kube_request_timeout_seconds,
        )
    except VerificationFailed as exc:
        return reconcile.Served(service, error=str(exc))
    return reconcile.Served(service, tuple(sorted(versions)))


@task(name="report_reconcile", cache_policy=NO_CACHE)
def report_reconcile(
    settings: PipelineSettings, observation: reconcile.Observation, decision: reconcile.Decision
) -> None:
    """The `reconcile` artifact; on a drift, the alert event and an error in the log."""
    selector = cluster.webservice_selector(settings.team)
    create_markdown_artifact(
        markdown=reconcile_markdown(observation, decision, settings.kube_namespace, selector),
        key="reconcile",
        description=f"Reconcile: {len(observation.drifts)} drift(s); {decision.text}",
    )
    production = observation.production
    if production is None or not observation.drifts:
        return
    emit_event(
        event=CLUSTER_DRIFT_EVENT,
        resource=version_resource(production.version),
        payload={
            "model_version": production.version,
            "image": production.image,
            "namespace": settings.kube_namespace,
            "selector": selector,
            "drifts": "; ".join(str(drift) for drift in observation.drifts),
            "action": decision.text,
        },
    )
    get_run_logger().error("%s; %s", observation.summary(), decision.text)
