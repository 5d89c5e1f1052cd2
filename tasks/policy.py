"""Retry policy shared by every task that touches the network: transient errors only, backoff with jitter."""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from oncology_pipeline.errors import is_transient


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only throttling, 5xx, timeouts and connection errors; fail at once on anything else."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


NETWORK_RETRIES: dict[str, Any] = {
    "retries": 4,
    "retry_delay_seconds": exponential_backoff(backoff_factor=1),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_transient,
}
