"""`python -m alerts`: idempotent (replace by name, never a duplicate), and where the webhook URL comes from."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest
from prefect import flow, get_client
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.blocks.system import Secret
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import Automation, EventTrigger
from pydantic import SecretStr

from alerts.automations import FAILED_RUN, NAMES, NIGHTLY_OVERDUE, SILENT_RUN, failed_run_alert
from tests.support.alert_server import HEARTBEAT_SECONDS, AlertServer


def _automations() -> dict[str, list[Automation]]:
    found: dict[str, list[Automation]] = {}
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            found.setdefault(automation.name, []).append(automation)
    return found


def _block_ids() -> set[UUID]:
    """The notification blocks the alert automations send through."""
    return {
        action.block_document_id
        for automations in _automations().values()
        for automation in automations
        for action in automation.actions
        if isinstance(action, SendNotification)
    }


@pytest.fixture
def restore(alert_server: AlertServer) -> Iterator[None]:
    """Put the alerts back as the other tests expect them (to the receiver), whatever the test changed."""
    yield
    assert alert_server.default_alerts().returncode == 0


def test_running_it_again_leaves_exactly_the_same_automations(alert_server: AlertServer) -> None:
    before = {name: [a.id for a in automations] for name, automations in _automations().items()}

    again = alert_server.default_alerts()

    assert again.returncode == 0, again.stderr
    assert f"unchanged {FAILED_RUN}\n" in again.stdout
    assert f"unchanged {NIGHTLY_OVERDUE}\n" in again.stdout
    assert f"unchanged {SILENT_RUN}\n" in again.stdout
    assert f"A run without a heartbeat for {3 * HEARTBEAT_SECONDS} s" in again.stdout
    after = {name: [a.id for a in automations] for name, automations in _automations().items()}
    assert sorted(after) == sorted(NAMES)
    assert after == before  # one each, the same ids
    listed = subprocess.run(
        [sys.executable, "-m", "prefect", "automation", "ls"],
        env=alert_server.env | {"COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    for name, [automation_id] in after.items():
        assert listed.stdout.count(name) == 1 and str(automation_id) in listed.stdout


def test_a_changed_definition_replaces_the_old_one_and_copies_go(alert_server: AlertServer, restore: None) -> None:
    before = _automations()
    [block_id] = _block_ids()
    with get_client(sync_client=True) as client:  # a copy, as an interrupted earlier version might have left
        client.create_automation(failed_run_alert(block_id))
    assert len(_automations()[FAILED_RUN]) == 2

    changed = alert_server.run_alerts(alert_webhook_url=alert_server.webhook_url, nightly_deadline_hours="0.5")

    assert changed.returncode == 0, changed.stderr
    assert f"updated   {NIGHTLY_OVERDUE}\n" in changed.stdout
    after = _automations()
    assert sorted(after) == sorted(NAMES)
    assert [len(automations) for automations in after.values()] == [1] * len(NAMES)
    [nightly] = after[NIGHTLY_OVERDUE]
    assert nightly.id == before[NIGHTLY_OVERDUE][0].id  # updated in place
    assert isinstance(nightly.trigger, EventTrigger)
    assert nightly.trigger.within == timedelta(hours=0.5)


def test_without_a_destination_it_refuses_and_changes_nothing(alert_server: AlertServer) -> None:
    before = {name: [(a.id, a.actions) for a in automations] for name, automations in _automations().items()}

    refused = alert_server.run_alerts(alert_block=f"nowhere-{uuid.uuid4().hex[:8]}")

    assert refused.returncode == 2
    assert "no alert destination: set ONCOLOGY_ALERT_WEBHOOK_URL" in refused.stderr
    assert {name: [(a.id, a.actions) for a in automations] for name, automations in _automations().items()} == before


def test_without_a_server_address_it_refuses(alert_server: AlertServer) -> None:
    env = {key: value for key, value in alert_server.env.items() if key != "PREFECT_API_URL"}
    env["ONCOLOGY_ALERT_WEBHOOK_URL"] = alert_server.webhook_url

    refused = subprocess.run(
        [sys.executable, "-m", "alerts"], env=env, cwd=alert_server.work_dir, capture_output=True, text=True
    )

    assert refused.returncode == 2
    assert "set PREFECT_API_URL" in refused.stderr


def test_the_url_can_come_from_a_secret_block(alert_server: AlertServer, restore: None) -> None:
    name = f"alerts-{uuid.uuid4().hex[:8]}"
    Secret(value=SecretStr(f"{alert_server.webhook_url}from-secret")).save(name)

    applied = alert_server.run_alerts(alert_block=name)

    assert applied.returncode == 0, applied.stderr
    assert f"custom-webhook/{name} (URL from the Secret block '{name}')" in applied.stdout
    run_name = f"deploy-20261125T020000Z-{uuid.uuid4().hex[:8]}"

    @flow(name="deploy", flow_run_name=run_name)
    def deploy() -> None:
        raise RuntimeError("rollout failed")

    assert deploy(return_state=True).is_failed()
    [message] = alert_server.wait_for(lambda text: run_name in text)
    assert message["path"] == "/from-secret"


def test_an_existing_notification_block_is_used_as_it_is(alert_server: AlertServer, restore: None) -> None:
    name = f"alerts-{uuid.uuid4().hex[:8]}"
    block = CustomWebhookNotificationBlock.model_validate(
        {"name": name, "url": f"{alert_server.webhook_url}hand-made", "json_data": {"text": "{{body}}"}}
    )
    block_id = block.save(name)

    applied = alert_server.run_alerts(alert_block=name)

    assert applied.returncode == 0, applied.stderr
    assert f"custom-webhook/{name} (an existing notification block)" in applied.stdout
    assert _block_ids() == {block_id}
