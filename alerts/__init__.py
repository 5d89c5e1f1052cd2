"""Alerts as code: Prefect automations that notify when a pipeline run fails or the nightly is overdue.

`python -m alerts` creates them (and their notification block) on the server in PREFECT_API_URL.
"""
