"""Dead runs: a run whose heartbeats stop (its process died with the worker or the machine) is marked Crashed by the
automation in alerts/, and the failed-run alert follows; nested stage runs are marked too, ended runs never."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from prefect import flow, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events import emit_event
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.states import Completed, Running

from alerts.automations import FINAL_STATES, HEARTBEAT, PIPELINE_FLOWS, SILENT_RUN, silent_run_crash
from tasks.runs import NESTED_PREFIX
from tests.support.alert_server import HEARTBEAT_SECONDS, AlertServer, message_text

#: The test's own copy of the automation beats every 4 s: a 12-s window (Prefect's proactive minimum is 10 s).
TEST_HEARTBEAT_SECONDS = 4


def test_the_dead_run_automation_is_on_the_server_with_its_trigger_and_action(alert_server: AlertServer) -> None:
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(SILENT_RUN)

    trigger = automation.trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {HEARTBEAT}
    assert trigger.expect == {HEARTBEAT} | {f"prefect.flow-run.{state}" for state in FINAL_STATES}
    assert {"Completed", "Failed", "Crashed", "Cancelled", "TimedOut"} <= set(FINAL_STATES)
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.within == timedelta(seconds=3 * HEARTBEAT_SECONDS)  # from PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    assert trigger.match_related == ResourceSpecification(
        {"prefect.resource.role": "flow", "prefect.resource.name": list(PIPELINE_FLOWS)}
    )
    [action] = automation.actions
    assert isinstance(action, ChangeFlowRunState)
    assert action.state == StateType.CRASHED and not action.force
    assert action.message and action.message.startswith(f"No heartbeat for {3 * HEARTBEAT_SECONDS} s")


@pytest.fixture
def deploy_runs(alert_server: AlertServer) -> Iterator[dict[str, FlowRun]]:
    """Three Running runs of flow `deploy`: one that stays silent, a silent nested stage run, and one that ends;
    and the test's copy of the automation watching exactly them (removed afterwards)."""

    @flow(name="deploy")
    def deploy() -> None:
        pass

    version = f"20261125T020000Z-{uuid.uuid4().hex[:8]}"
    names = {
        "ended": f"deploy-{version}-ok",
        "silent": f"deploy-{version}",
        "nested": f"{NESTED_PREFIX}deploy-{version}",
    }
    with get_client(sync_client=True) as client:
        runs = {kind: client.create_flow_run(deploy, name=name) for kind, name in names.items()}
        for run in runs.values():
            client.set_flow_run_state(run.id, Running())
        automation = silent_run_crash(TEST_HEARTBEAT_SECONDS)
        assert isinstance(automation.trigger, EventTrigger)
        ids = [f"prefect.flow-run.{run.id}" for run in runs.values()]
        watched = ResourceSpecification({"prefect.resource.id": ids})
        trigger = automation.trigger.model_copy(update={"match": watched})
        automation_id = client.create_automation(
            automation.model_copy(update={"name": f"{SILENT_RUN} ({version})", "trigger": trigger})
        )
    try:
        yield runs
    finally:
        with get_client(sync_client=True) as client:
            client.delete_automation(automation_id)


def _heartbeat(run: FlowRun) -> None:
    """The event a live run's engine sends (prefect/flow_engine.py `_emit_flow_run_heartbeat`)."""
    emit_event(
        event=HEARTBEAT,
        resource={"prefect.resource.id": f"prefect.flow-run.{run.id}", "prefect.resource.name": run.name},
        related=[
            {
                "prefect.resource.id": f"prefect.flow.{run.flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": "deploy",
            }
        ],
    )


def _state(run: FlowRun) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    return state.type if state else None


def _wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.5)


def test_a_run_whose_heartbeats_stop_is_marked_crashed_and_alerted(
    alert_server: AlertServer, deploy_runs: dict[str, FlowRun]
) -> None:
    _heartbeat(deploy_runs["ended"])  # first: its window closes no later than the others'
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(deploy_runs["ended"].id, Completed())
    _heartbeat(deploy_runs["silent"])
    _heartbeat(deploy_runs["nested"])
    started = time.monotonic()

    _wait_until(lambda: _state(deploy_runs["silent"]) == StateType.CRASHED, 60)
    _wait_until(lambda: _state(deploy_runs["nested"]) == StateType.CRASHED, 15)

    assert time.monotonic() - started >= 3 * TEST_HEARTBEAT_SECONDS - 1  # not before the window closed
    assert _state(deploy_runs["ended"]) == StateType.COMPLETED
    silent = deploy_runs["silent"].name
    [message] = alert_server.wait_for(lambda text: f"Flow run: {silent}\n" in text, 30)
    text = message_text(message)
    assert "State: Crashed\n" in text
    assert f"Reason: No heartbeat for {3 * TEST_HEARTBEAT_SECONDS} s" in text
