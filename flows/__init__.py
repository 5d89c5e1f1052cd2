"""Prefect flows: wiring only, one file per flow."""
