"""Alert (c): the monitor's recall-alarm event gives one notification naming the version, its realised recall with
the interval and case count, the gate's minimum and the window."""

from __future__ import annotations

import uuid

from prefect.events import emit_event

from oncology_pipeline.events import RECALL_ALARM_EVENT
from tests.support.alert_server import AlertServer, message_text


def test_a_recall_alarm_event_sends_the_figures(alert_server: AlertServer) -> None:
    version = f"20261125T020000Z-{uuid.uuid4().hex[:8]}"
    emit_event(
        event=RECALL_ALARM_EVENT,
        resource={"prefect.resource.id": f"oncology.model-version.{version}", "prefect.resource.name": version},
        payload={
            "model_version": version,
            "recall": 0.4,
            "recall_low": 0.168,
            "recall_high": 0.687,
            "confirmed_malignant": 10,
            "min_recall": 0.95,
            "window_start": "2026-11-03T01:00:00+00:00",
            "window_end": "2026-12-03T01:00:00+00:00",
            "performance": "s3://metrics/monitoring/run/performance.json",
        },
    )
    [message] = alert_server.wait_for(lambda text: version in text, 60)
    text = message_text(message)
    assert f"Model version: {version}\n" in text
    assert "Realised recall: 0.4 (95 % Wilson interval 0.168 - 0.687, 10 confirmed malignant cases)" in text
    assert "The gate's minimum recall: 0.95" in text
    assert "Predictions from 2026-11-03T01:00:00+00:00 to 2026-12-03T01:00:00+00:00" in text
