"""Thin Prefect tasks: retries, logging and artifacts around one plain call each."""

from tasks import expected_failures

expected_failures.install()  # every process that runs our flows imports tasks: expected errors log one line
