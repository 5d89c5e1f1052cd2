"""Alert (d): the monitor's drift event gives one notification naming the version, the drifting inputs, the window
and how many confirmed cases retraining has."""

from __future__ import annotations

import uuid

from prefect.events import emit_event

from oncology_pipeline.events import DRIFT_EVENT
from tests.support.alert_server import AlertServer, message_text


def test_a_drift_event_sends_the_features_the_window_and_the_retraining_rule(alert_server: AlertServer) -> None:
    version = f"20261125T020000Z-{uuid.uuid4().hex[:8]}"
    emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": f"oncology.model-version.{version}", "prefect.resource.name": version},
        payload={
            "model_version": version,
            "features": "bare_nuclei",
            "rows": 600,
            "alpha": 0.05,
            "window_start": "2026-12-06T01:00:00+00:00",
            "window_end": "2026-12-07T01:00:00+00:00",
            "new_confirmed_cases": 0,
            "drift": "s3://metrics/monitoring/run/drift.json",
        },
    )
    [message] = alert_server.wait_for(lambda text: version in text, 60)
    text = message_text(message)
    assert f"input drift for {version}: bare_nuclei" in text
    assert "Drifting: bare_nuclei\n" in text
    assert "Window: 2026-12-06T01:00:00+00:00 to 2026-12-07T01:00:00+00:00 (600 predictions)" in text
    assert "Figures and chart: s3://metrics/monitoring/run/drift.json" in text
    assert "0 new this run" in text and "never on drift alone" in text
