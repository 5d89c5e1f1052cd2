"""Put automations on a Prefect server, replacing by name: running it again never duplicates one."""

from __future__ import annotations

from typing import Literal

from prefect.automations import AutomationCore
from prefect.client.orchestration import SyncPrefectClient
from prefect.events.schemas.automations import Automation

Outcome = Literal["created", "updated", "unchanged"]


def _definition(automation: Automation) -> AutomationCore:
    """What the server holds, without its id, comparable with a definition in code."""
    return AutomationCore.model_validate(automation.model_dump(exclude={"id"}))


def apply_automation(client: SyncPrefectClient, desired: AutomationCore) -> Outcome:
    """Create `desired`, or update the automation of that name in place (its id stays); extra copies go."""
    existing = client.read_automations_by_name(desired.name)  # newest first
    for duplicate in existing[1:]:
        client.delete_automation(duplicate.id)
    if not existing:
        client.create_automation(desired)
        return "created"
    if _definition(existing[0]) == desired:
        return "unchanged"
    client.update_automation(existing[0].id, desired)
    return "updated"


def apply_automations(client: SyncPrefectClient, automations: list[AutomationCore]) -> dict[str, Outcome]:
    """Apply each automation; its name → what happened."""
    return {automation.name: apply_automation(client, automation) for automation in automations}
