"""Alert (a): a run of a pipeline flow that ends Failed, TimedOut or Crashed gives exactly one notification,
naming the flow, the run, the reason and the run's UI URL; successful runs and other flows give none."""

from __future__ import annotations

import time
import uuid
from typing import Any
from uuid import UUID

from prefect import flow, get_client
from prefect.client.schemas.objects import State
from prefect.states import Crashed, Failed, Running

from tasks.runs import stamp_run
from tests.support.alert_server import AlertServer, message_text

#: After the sentinel's notification arrived, this much longer for anything that might still be on its way.
GRACE_SECONDS = 3


def _run_name(stage: str) -> str:
    """A run name like the pipeline's (`<flow>-<version>`), unique to the test."""
    return f"{stage}-20261125T020000Z-{uuid.uuid4().hex[:8]}"


def _sentinel(server: AlertServer) -> None:
    """Fail one more pipeline run and wait for its notification: the server evaluates events in the order it
    receives them, so everything sent before it has been evaluated and acted on by then."""
    name = _run_name("test")

    @flow(name="test", flow_run_name=name)
    def sentinel() -> None:
        raise RuntimeError("sentinel")

    assert sentinel(return_state=True).is_failed()
    server.wait_for(lambda text: name in text)
    time.sleep(GRACE_SECONDS)


def _assert_one_alert(
    server: AlertServer, flow_name: str, run_name: str, run_id: UUID | None, state: str, reason: str
) -> None:
    [message] = server.wait_for(lambda text: run_name in text)
    text = message_text(message)
    assert f"Flow: {flow_name}\n" in text
    assert f"Flow run: {run_name}\n" in text
    assert f"State: {state}\n" in text
    assert f"Reason: {reason}" in text
    assert f"URL: {server.ui_url}/runs/flow-run/{run_id}" in text
    _sentinel(server)
    assert len(server.messages(lambda text: run_name in text)) == 1, "a second notification for the same run"


def test_a_failed_run_gives_one_notification_with_its_reason_and_url(alert_server: AlertServer) -> None:
    name = _run_name("train")

    @flow(name="train", flow_run_name=name)
    def train() -> None:
        raise ValueError("quality gate: recall 0.91 < 0.95")

    state = train(return_state=True)

    assert state.is_failed()
    reason = "Flow run encountered an exception: ValueError: quality gate: recall 0.91 < 0.95"
    _assert_one_alert(alert_server, "train", name, state.state_details.flow_run_id, "Failed", reason)


def test_a_timed_out_run_gives_one_notification(alert_server: AlertServer) -> None:
    name = _run_name("publish")

    @flow(name="publish", flow_run_name=name, timeout_seconds=1)
    def publish() -> None:
        for _ in range(300):
            time.sleep(0.1)

    state = publish(return_state=True)

    assert state.name == "TimedOut"
    _assert_one_alert(alert_server, "publish", name, state.state_details.flow_run_id, "TimedOut", "Flow run exceeded")


def test_a_crashed_run_gives_one_notification(alert_server: AlertServer) -> None:
    """Crashed as a worker reports it when the run's process dies (here through the same API call)."""
    name = _run_name("deploy")

    @flow(name="deploy")
    def deploy() -> None:
        pass

    reason = "Flow run infrastructure exited with non-zero status code -9."
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(deploy, name=name)
        client.set_flow_run_state(run.id, Running())
        client.set_flow_run_state(run.id, Crashed(message=reason))

    _assert_one_alert(alert_server, "deploy", name, run.id, "Crashed", reason)


def test_successful_runs_and_other_flows_give_none(alert_server: AlertServer) -> None:
    succeeded, foreign = _run_name("train"), f"someone-else-{uuid.uuid4().hex[:8]}"

    @flow(name="train", flow_run_name=succeeded)
    def train() -> int:
        return 1

    @flow(name="someone-elses-flow", flow_run_name=foreign)
    def other() -> None:
        raise ValueError("not a pipeline flow")

    assert train(return_state=True).is_completed()
    assert other(return_state=True).is_failed()
    _sentinel(alert_server)

    assert alert_server.messages(lambda text: succeeded in text) == []
    assert alert_server.messages(lambda text: foreign in text) == []


def test_a_failed_stage_inside_the_pipeline_alerts_once_through_the_pipeline_run(alert_server: AlertServer) -> None:
    """The stage's nested run (renamed `pipeline-<stage>-<version>` by stamp_run) stays quiet; the pipeline's
    run, whose message names the stage, alerts."""
    version = f"20261125T020000Z-{uuid.uuid4().hex[:8]}"
    pipeline = f"train-test-publish-deploy-{version}"

    @flow(name="train")
    def train() -> None:
        stamp_run(version)
        raise ValueError("no training data")

    @flow(name="train-test-publish-deploy", flow_run_name=pipeline)
    def train_test_publish_deploy() -> State[Any]:
        state = train(return_state=True)
        return Failed(message=f"failed at train: {state.message}")

    assert train_test_publish_deploy(return_state=True).is_failed()
    alert_server.wait_for(lambda text: f"Flow run: {pipeline}\n" in text)
    _sentinel(alert_server)

    (record,) = alert_server.messages(lambda text: version in text)
    message = message_text(record)
    assert f"Flow run: {pipeline}\n" in message and "Reason: failed at train: " in message
    assert "no training data" in message
