"""Thin Prefect tasks: retries, logging and artifacts around one plain call each."""
