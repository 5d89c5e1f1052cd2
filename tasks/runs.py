"""The header every flow shares, the pipeline version of a flow run, and the run's name."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

from prefect import Flow, flow, get_client
from prefect.runtime import flow_run

from oncology_model.versioning import check_version, new_version
from oncology_pipeline.settings import load_settings

P = ParamSpec("P")
R = TypeVar("R")

#: The name prefix of a stage's flow run when the pipeline flow runs it (alerts go to the pipeline's run only).
NESTED_PREFIX = "pipeline-"


def pipeline_flow(
    name: str, *version_parameters: str, limit: Literal["stage", "pipeline"] = "stage"
) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """The header of every flow: its name, a run name from its version parameter (`run_name`), no print capture, and
    its time limit (`stage_timeout_seconds`, or the pipeline's) from the worker's settings, read when the flow's
    module is imported (not from a run's overrides)."""
    settings = load_settings()
    seconds = settings.pipeline_timeout_seconds if limit == "pipeline" else settings.stage_timeout_seconds
    return flow(name=name, flow_run_name=run_name(name, *version_parameters), log_prints=False, timeout_seconds=seconds)


def stamp_run(version: str | None) -> str:
    """The given version (checked) or a new one from this flow run's id; renames the run `<flow>-<version>`,
    or `pipeline-<flow>-<version>` when it runs inside another flow run (a stage of the pipeline)."""
    stage, run_id = flow_run.flow_name, flow_run.id
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
