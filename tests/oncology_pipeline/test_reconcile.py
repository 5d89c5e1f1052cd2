"""Observe first, as pure functions: production's records against the Deployments and the Service's answer, what a
run decides to do about a drift, and what a person reads (tests/flows/test_pipeline.py runs it against a cluster)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes.client import (
    V1Container,
    V1Deployment,
    V1DeploymentSpec,
    V1LabelSelector,
    V1ObjectMeta,
    V1PodSpec,
    V1PodTemplateSpec,
)

from oncology_pipeline.cluster import WEBSERVICE_CONTAINER, Restore
from oncology_pipeline.modelstore import ProductionPointer
from oncology_pipeline.reconcile import Observation, Repair, Served, decide, observe, running
from oncology_pipeline.releases import ANNOTATION_RELEASE, ANNOTATION_VERSION, ImageSection, ReleaseRecord, serving_env
from oncology_pipeline.reports import reconcile_markdown
from oncology_pipeline.summary import PipelineSummary

BUCKET = "models"
V1, V2 = "20261124T020000Z-00000001", "20261125T020000Z-00000002"
OLD = "registry.local/oncology-webservice@sha256:" + "a" * 64
NEW = "registry.local/oncology-webservice@sha256:" + "b" * 64
RELEASE = f"s3://{BUCKET}/releases/{V2}.json"
SERVICE = "oncology-webservice:http"
SERVING_V2 = Served(SERVICE, (V2,))


def _deployment(name: str, image: str, version: str | None = V2, replicas: int = 2) -> V1Deployment:
    annotations = {ANNOTATION_VERSION: version, ANNOTATION_RELEASE: RELEASE} if version else None
    containers = [
        V1Container(name="log-shipper", image="fluent-bit:3"),
        V1Container(name=WEBSERVICE_CONTAINER, image=image),
    ]
    return V1Deployment(
        metadata=V1ObjectMeta(name=name, annotations=annotations),
        spec=V1DeploymentSpec(
            replicas=replicas,
            selector=V1LabelSelector(),
            template=V1PodTemplateSpec(spec=V1PodSpec(containers=containers)),
        ),
    )


def _pointer(image: str | None = NEW) -> ProductionPointer:
    return ProductionPointer(model_version=V2, keys=[], updated_at=datetime.now(UTC), image=image, release=RELEASE)


def _record(image: str = NEW, production: bool = True) -> ReleaseRecord:
    return ReleaseRecord(model_version=V2, production=production, image=ImageSection(reference=image))


def _observe(
    *deployments: V1Deployment,
    served: Served | None = SERVING_V2,
    pointer: ProductionPointer | None = None,
    record: ReleaseRecord | None = None,
) -> Observation:
    running_ = [running(d, WEBSERVICE_CONTAINER) for d in deployments]
    return observe(pointer or _pointer(), '"etag"', record or _record(), BUCKET, running_, served)


def test_agreement_is_no_drift_and_a_failed_deploy_would_restore_productions_recorded_image() -> None:
    observation = _observe(_deployment("oncology-webservice", NEW))

    assert observation.drifts == ()
    assert observation.summary().startswith(f"in sync: 1 Deployment(s) run production {V2} as recorded")
    assert decide(observation, "repair").repair is None
    assert observation.pointer_etag == '"etag"'
    restore = observation.restore_for(OLD)
    assert restore == Restore(NEW, {ANNOTATION_VERSION: V2, ANNOTATION_RELEASE: RELEASE}, serving_env(NEW, V2))
    assert observation.restore_for(NEW) is None  # redeploying production's own image: what ran goes back


def test_another_image_on_a_deployment_is_a_drift_that_repair_rolls_back_to_the_recorded_digest() -> None:
    observation = _observe(_deployment("oncology-webservice", OLD), served=Served(SERVICE, (V1,)))

    assert [(d.kind, d.where, d.found, d.expected) for d in observation.drifts] == [
        ("image", "deployment oncology-webservice: image", OLD, NEW),
        ("served", f"service {SERVICE}: GET /v1/model", V1, V2),
    ]
    repair = decide(observation, "repair")
    assert repair.repair == Repair(V2, NEW, {ANNOTATION_VERSION: V2, ANNOTATION_RELEASE: RELEASE})
    assert repair.text.startswith(f"repair: roll production's recorded image {NEW} out again")
    alert = decide(observation, "alert")
    assert alert.repair is None and alert.text == "alert only (reconcile: alert): nothing was changed"
    deploying = decide(observation, "repair", deploying=V1)
    assert deploying.repair is None and "production's recorded image goes back" in deploying.text


def test_a_deployment_annotated_with_another_version_is_a_drift() -> None:
    observation = _observe(_deployment("oncology-webservice", NEW, version=V1))

    [drift] = observation.drifts
    assert (drift.kind, drift.found, drift.expected) == ("annotation", V1, V2)
    assert (
        str(drift) == f"deployment oncology-webservice: {ANNOTATION_VERSION}: found {V1}, production's records say {V2}"
    )
    assert decide(observation, "repair").repair is not None


@pytest.mark.parametrize(
    ("served", "found"),
    [(Served(SERVICE, (V1, V2)), V1), (Served(SERVICE, error="HTTP 503: no ready endpoints"), "no answer (HTTP 503")],
)
def test_the_service_answering_another_version_or_not_at_all_is_a_drift(served: Served, found: str) -> None:
    observation = _observe(_deployment("oncology-webservice", NEW), served=served)

    [drift] = observation.drifts
    assert drift.kind == "served" and drift.found.startswith(found) and drift.expected == V2


def test_before_the_first_release_there_is_nothing_to_compare_with() -> None:
    deployment = running(_deployment("oncology-webservice", OLD, version=None), WEBSERVICE_CONTAINER)
    observation = observe(None, "", None, BUCKET, [deployment], None)

    assert observation.production is None and observation.drifts == ()
    assert observation.summary() == "no production yet: nothing to compare 1 Deployment(s) with"
    assert decide(observation, "repair").text == "no production yet: nothing to compare with"
    assert observation.restore_for(NEW) is None  # a failed first deploy puts back what ran


def test_each_of_several_deployments_is_compared_on_its_own() -> None:
    observation = _observe(
        _deployment("oncology-webservice", NEW),
        _deployment("oncology-webservice-canary", OLD, version=V1, replicas=1),
    )

    assert [(d.kind, d.where) for d in observation.drifts] == [
        ("image", "deployment oncology-webservice-canary: image"),
        ("annotation", f"deployment oncology-webservice-canary: {ANNOTATION_VERSION}"),
    ]
    assert [(r.deployment, r.replicas) for r in observation.deployments] == [
        ("oncology-webservice", 2),
        ("oncology-webservice-canary", 1),
    ]


def test_records_that_disagree_are_a_drift_no_rollout_repairs() -> None:
    observation = _observe(_deployment("oncology-webservice", NEW), record=_record(image=OLD, production=False))

    assert {(d.kind, d.found) for d in observation.drifts} == {("record", "production: false"), ("record", OLD)}
    assert observation.production is not None and observation.production.image == NEW  # the pointer decides
    decision = decide(observation, "repair")
    assert decision.repair is None and decision.text == "alert only: cannot repair (the record drift needs a person)"


def test_no_matching_deployment_is_a_drift_nothing_can_be_rolled_out_to() -> None:
    observation = _observe(served=None)

    [drift] = observation.drifts
    assert (drift.where, drift.found) == ("cluster", "no matching Deployment")
    assert decide(observation, "repair").repair is None


def test_an_older_pointer_without_an_image_takes_the_release_records() -> None:
    observation = _observe(_deployment("oncology-webservice", NEW), pointer=_pointer(image=None))

    assert observation.production is not None and observation.production.image == NEW
    assert observation.drifts == ()


def test_the_artifact_and_the_run_summary_list_every_drift_and_the_action() -> None:
    observation = _observe(_deployment("oncology-webservice", OLD), served=Served(SERVICE, (V1,)))
    decision = decide(observation, "alert")

    text = reconcile_markdown(observation, decision, "oncology", "app=oncology-webservice,team=ml-platform")

    assert text.startswith(f"# Reconcile: 2 drift(s) from production {V2}\n")
    assert "Action: alert only (reconcile: alert): nothing was changed" in text
    found, recorded = f"oncology-webservice@sha256:{'a' * 12}", f"oncology-webservice@sha256:{'b' * 12}"
    assert f"| deployment oncology-webservice: image | {found} | {recorded} |" in text  # in full on the Production line
    assert f"image `{NEW}`" in text
    assert f"| service {SERVICE}: GET /v1/model | {V1} | {V2} |" in text
    assert f"| oncology-webservice | `oncology-webservice@sha256:{'a' * 12}` | {V2} | 2 |" in text
    assert f"Service `{SERVICE}` serves: {V1}" in text
    summary = PipelineSummary(version="v3", reconcile=decision.text, drifts=[str(d) for d in observation.drifts])
    assert (
        f"Cluster: {decision.text}\n- drift: deployment oncology-webservice: image: found {OLD}" in summary.markdown()
    )
