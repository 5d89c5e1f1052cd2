"""Read back what a flow run left in the Prefect API: its task runs and artifacts."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun, TaskRun


def flow_run(run_id: UUID) -> FlowRun:
    """The flow run."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def task_runs(run_id: UUID) -> dict[str, TaskRun]:
    """The flow run's task runs by task name (the last run of each name)."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {run.name.rsplit("-", 1)[0]: run for run in sorted(runs, key=lambda r: r.expected_start_time or 0)}


def artifacts(run_id: UUID) -> list[Any]:
    """The flow run's artifacts."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))


def latest_flow_run(name: str) -> FlowRun:
    """The newest flow run of that name (for a run that raised instead of returning its state)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    assert runs, f"no flow run named {name}"
    return max(runs, key=lambda run: run.created or run.expected_start_time or 0)
