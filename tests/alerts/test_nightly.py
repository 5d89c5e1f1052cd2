"""Alert (b): a run of the nightly deployment that has not Completed within the deadline after it became due
(picked up by a worker, or marked Late by the server because none took it) gives one notification.

The deadline is DEADLINE_HOURS (10.8 s). The runs belong to a real deployment `nightly` of a flow
`train-test-publish-deploy` created through the API; a worker's part (Pending, Running, Completed) is played by
the same API calls a worker makes, and the server itself marks the untaken run Late.
"""

from __future__ import annotations

import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Completed, Pending, Running

from alerts.automations import NIGHTLY_DEPLOYMENT, NIGHTLY_FLOW
from tests.support.alert_server import DEADLINE_HOURS, AlertServer, message_text


@pytest.fixture(scope="module")
def nightly_runs(alert_server: AlertServer) -> dict[str, FlowRun]:
    """Three nightly runs due now: one a worker took and that hangs, one never taken, one that completes."""
    suffix = uuid.uuid4().hex[:8]
    with get_client(sync_client=True) as client:
        deployment_id = client.create_deployment(
            flow_id=client.create_flow_from_name(NIGHTLY_FLOW), name=NIGHTLY_DEPLOYMENT
        )
        runs = {
            kind: client.create_flow_run_from_deployment(deployment_id, name=f"{NIGHTLY_FLOW}-{kind}-{suffix}")
            for kind in ("hung", "untaken", "completed")
        }
        client.set_flow_run_state(runs["hung"].id, Pending())
        states: list[State[None]] = [Pending(), Running(), Completed()]
        for state in states:
            client.set_flow_run_state(runs["completed"].id, state)
    return runs


def _overdue(server: AlertServer, run: FlowRun, seconds: float) -> str:
    [message] = server.wait_for(lambda text: f"Flow run: {run.name}\n" in text, seconds)
    text = message_text(message)
    assert f"has not reached Completed within {DEADLINE_HOURS:g} h" in text
    assert f"Deployment: {NIGHTLY_DEPLOYMENT}\n" in text
    assert f"URL: {server.ui_url}/runs/flow-run/{run.id}" in text
    return text


def test_a_run_that_was_taken_but_never_completed_alerts(
    alert_server: AlertServer, nightly_runs: dict[str, FlowRun]
) -> None:
    text = _overdue(alert_server, nightly_runs["hung"], 60)
    assert "(prefect.flow-run.Pending)" in text
    assert "State now: Pending" in text


def test_a_run_that_no_worker_took_alerts(alert_server: AlertServer, nightly_runs: dict[str, FlowRun]) -> None:
    text = _overdue(alert_server, nightly_runs["untaken"], 90)
    assert "(prefect.flow-run.Late)" in text
    assert "State now: Late" in text


def test_a_completed_run_does_not_alert_and_none_alerts_twice(
    alert_server: AlertServer, nightly_runs: dict[str, FlowRun]
) -> None:
    """The untaken run's alert comes last (it became due about 15 s after the others), so by then the completed
    run's window had closed and been evaluated."""
    _overdue(alert_server, nightly_runs["untaken"], 90)

    assert alert_server.messages(lambda text: nightly_runs["completed"].name in text) == []
    texts = [message_text(m) for m in alert_server.messages()]
    for kind in ("hung", "untaken"):
        assert sum(nightly_runs[kind].name in text for text in texts) == 1, kind
