"""The alert definitions themselves (no server)."""

from __future__ import annotations

import importlib
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from prefect import Flow
from prefect.automations import EventTrigger, Posture, ResourceSpecification

from alerts.automations import PIPELINE_FLOWS, failed_run_alert, nightly_overdue_alert, silent_run_crash

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"


def test_every_flow_of_the_project_is_watched() -> None:
    modules = [importlib.import_module(f"flows.{path.stem}") for path in FLOWS_DIR.glob("*.py")]
    names = {value.name for module in modules for value in vars(module).values() if isinstance(value, Flow)}

    assert "train-test-publish-deploy" in names
    assert names <= set(PIPELINE_FLOWS), f"not alerted: {names - set(PIPELINE_FLOWS)}"
    trigger = failed_run_alert(uuid.uuid4()).trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.match_related == ResourceSpecification(
        {"prefect.resource.role": "flow", "prefect.resource.name": list(PIPELINE_FLOWS)}
    )


def test_the_nightly_deadline_is_a_proactive_window_per_run() -> None:
    trigger = nightly_overdue_alert(uuid.uuid4(), 4).trigger

    assert isinstance(trigger, EventTrigger)
    assert trigger.posture == Posture.Proactive
    assert trigger.within == timedelta(hours=4)
    assert trigger.expect == {"prefect.flow-run.Completed"}
    assert "prefect.flow-run.Late" in trigger.after and "prefect.flow-run.Pending" in trigger.after
    assert trigger.for_each == {"prefect.resource.id"}


def test_a_deadline_shorter_than_prefect_can_watch_is_refused() -> None:
    with pytest.raises(ValueError, match="under the 10 s"):
        nightly_overdue_alert(uuid.uuid4(), 0.002)


def test_a_heartbeat_window_shorter_than_prefect_can_watch_is_refused() -> None:
    assert silent_run_crash(4).trigger.within == timedelta(seconds=12)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="under the 10 s"):
        silent_run_crash(3)
