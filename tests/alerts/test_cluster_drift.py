"""Alert (e): a run that finds the cluster disagreeing with production's records (tasks/reconcile.py) gives one
notification naming production, where the cluster drifted, what the run did about it, and the run."""

from __future__ import annotations

import uuid

from prefect import flow
from prefect.events import emit_event

from oncology_pipeline.events import CLUSTER_DRIFT_EVENT, version_resource
from tests.support.alert_server import AlertServer, message_text


def test_a_cluster_drift_event_sends_production_the_drift_the_action_and_the_run(alert_server: AlertServer) -> None:
    version = f"20261125T020000Z-{uuid.uuid4().hex[:8]}"
    image = "registry.local/oncology-webservice@sha256:" + "b" * 64
    run_name = f"train-test-publish-deploy-{version}"

    @flow(name="train-test-publish-deploy", flow_run_name=run_name)
    def nightly() -> None:  # the event comes from inside a run, as the reconcile task sends it
        emit_event(
            event=CLUSTER_DRIFT_EVENT,
            resource=version_resource(version),
            payload={
                "model_version": version,
                "image": image,
                "namespace": "oncology",
                "selector": "app=oncology-webservice,team=ml-platform",
                "drifts": "deployment oncology-webservice: image: found registry.local/x@sha256:aaaa, production's "
                "records say " + image,
                "action": "alert only (reconcile: alert): nothing was changed",
            },
        )

    state = nightly(return_state=True)

    assert state.is_completed()
    [message] = alert_server.wait_for(lambda text: f"production {version} as recorded" in text, 60)
    text = message_text(message)
    assert f"Production (the pointer): {version}, recorded image {image}\n" in text
    assert "Deployments: app=oncology-webservice,team=ml-platform in namespace oncology\n" in text
    assert "Found: deployment oncology-webservice: image: found registry.local/x@sha256:aaaa" in text
    assert "Action: alert only (reconcile: alert): nothing was changed\n" in text
    assert f"Flow run: {run_name} ({alert_server.ui_url}/runs/flow-run/{state.state_details.flow_run_id})" in text
