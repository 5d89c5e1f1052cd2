"""The pipeline version of a flow run, and the run's name."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prefect import get_client
from prefect.runtime import flow_run

from oncology_model.versioning import check_version, new_version

#: The name prefix of a stage's flow run when the pipeline flow runs it (alerts go to the pipeline's run only).
NESTED_PREFIX = "pipeline-"


def stamp_run(stage: str, version: str | None) -> str:
    """The given version (checked) or a new one from this flow run's id; renames the run `<stage>-<version>`,
    or `pipeline-<stage>-<version>` when it runs inside another flow run (a stage of the pipeline)."""
    run_id = flow_run.id
    version = check_version(version) if version else _version_of_this_run()
    if run_id:
        prefix = NESTED_PREFIX if flow_run.parent_flow_run_id else ""
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=f"{prefix}{stage}-{version}")
    return version


def run_name(stage: str, *version_parameters: str) -> Callable[[], str]:
    """A `flow_run_name` that names the run as stamp_run will, from its start (so logs and UI agree): the first
    of `version_parameters` that is set, else the run's own new version."""

    def name() -> str:
        parameters = flow_run.parameters
        version = next((parameters[p] for p in version_parameters if parameters.get(p)), None)
        prefix = NESTED_PREFIX if flow_run.parent_flow_run_id else ""
        return f"{prefix}{stage}-{version or _version_of_this_run()}"

    return name


def _version_of_this_run() -> str:
    """The version of a run that was given none: its scheduled start and id (the same on every call)."""
    return new_version(flow_run.id, flow_run.scheduled_start_time)


def ensure_concurrency_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit `name` if the server has none (an existing one is left as it is)."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # created by a concurrent run meanwhile: fine
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
