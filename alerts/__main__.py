"""`python -m alerts`: create or update the notification block and the alert automations, idempotently.

The server is PREFECT_API_URL; the destination comes from ONCOLOGY_ALERT_WEBHOOK_URL or ONCOLOGY_ALERT_BLOCK,
the nightly deadline from ONCOLOGY_NIGHTLY_DEADLINE_HOURS (see oncology_pipeline/settings.py).
Exit status: 0 done, 2 nothing says where alerts go or which server to use.
"""

from __future__ import annotations

import sys

from prefect import get_client
from prefect.settings import PREFECT_API_URL

from alerts.apply import apply_automations
from alerts.automations import alert_automations
from alerts.destination import AlertDestinationMissing, resolve_destination
from oncology_pipeline.settings import PipelineSettings


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
        automations = alert_automations(destination.block_id, settings.nightly_deadline_hours)
        outcomes = apply_automations(client, automations)
    sys.stdout.write(f"Alerts on {api_url}, sent through the block {destination.description}:\n")
    sys.stdout.write("".join(f"  {outcome:<9} {name}\n" for name, outcome in outcomes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
