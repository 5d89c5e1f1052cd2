"""The pipeline version of a flow run, and the run's name."""

from __future__ import annotations

from prefect import get_client
from prefect.runtime import flow_run

from oncology_pipeline.versioning import check_version, new_version


def stamp_run(stage: str, version: str | None) -> str:
    """The given version (checked) or a new one from this flow run's id; renames the run `<stage>-<version>`."""
    run_id = flow_run.id
    version = check_version(version) if version else new_version(run_id)
    if run_id:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=f"{stage}-{version}")
    return version
