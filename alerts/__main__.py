"""`python -m alerts`: create or update the notification block and the alert automations, idempotently.

The server is PREFECT_API_URL; the destination comes from ONCOLOGY_ALERT_WEBHOOK_URL or ONCOLOGY_ALERT_BLOCK,
the nightly deadline from ONCOLOGY_NIGHTLY_DEADLINE_HOURS (see oncology_pipeline/settings.py), the heartbeat window
from PREFECT_FLOWS_HEARTBEAT_FREQUENCY: run it with the value the worker (or its job template) gives flow runs.
Exit status: 0 done, 2 nothing says where alerts go or which server to use.
"""

from __future__ import annotations

import sys

from prefect import get_client
from prefect.settings import PREFECT_API_URL, get_current_settings
from prefect.settings.models.flows import FlowsSettings

from alerts.apply import apply_automations
from alerts.automations import MISSED_HEARTBEATS, alert_automations
from alerts.destination import AlertDestinationMissing, resolve_destination
from oncology_pipeline.settings import PipelineSettings


def heartbeat_seconds() -> int:
    """PREFECT_FLOWS_HEARTBEAT_FREQUENCY here, else Prefect's default (180 s): the runs' heartbeat interval."""
    configured = get_current_settings().flows.heartbeat_frequency
    default = FlowsSettings.model_fields["heartbeat_frequency"].default
    return int(configured or default)


def main() -> int:
    """Apply the alerts to the server in PREFECT_API_URL and say what changed."""
    api_url = PREFECT_API_URL.value()
    if not api_url:  # without it, Prefect would start a throw-away server and the alerts would vanish with it
        sys.stderr.write("alerts: set PREFECT_API_URL to the Prefect server's API (e.g. http://127.0.0.1:4200/api)\n")
        return 2
    settings = PipelineSettings()
    with get_client(sync_client=True) as client:
        try:
            destination = resolve_destination(client, settings)
        except AlertDestinationMissing as missing:
            sys.stderr.write(f"alerts: {missing}\n")
            return 2
        beat = heartbeat_seconds()
        automations = alert_automations(destination.block_id, settings.nightly_deadline_hours, beat)
        outcomes = apply_automations(client, automations)
    sys.stdout.write(f"Alerts on {api_url}, sent through the block {destination.description}:\n")
    sys.stdout.write("".join(f"  {outcome:<9} {name}\n" for name, outcome in outcomes.items()))
    sys.stdout.write(
        f"A run without a heartbeat for {MISSED_HEARTBEATS * beat} s ({MISSED_HEARTBEATS} x "
        f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY={beat} s; the worker must give flow runs the same) is marked Crashed.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
