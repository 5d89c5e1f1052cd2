"""Running one stage of the pipeline: within the stage time limit, timed into the summary, its failure wrapped."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast

from prefect import Flow
from prefect.client.schemas.objects import State

from oncology_pipeline.settings import PipelineSettings
from oncology_pipeline.summary import STAGES, PipelineSummary


class StageFailed(Exception):
    """A stage's flow run did not complete: the stage, and the exception it ended with."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"failed at {stage}: {cause}")
        self.stage, self.cause = stage, cause


def run_stage(summary: PipelineSummary, settings: PipelineSettings, stage: str, run: Any, **parameters: Any) -> Any:
    """Run one stage (a flow, within the stage time limit, or a plain step) and time it; StageFailed if it fails
    (the summary then says so, and that the later stages did not run)."""
    start = time.perf_counter()
    summary.started_at[stage] = datetime.now(UTC)
    try:
        if not isinstance(run, Flow):
            try:
                return run(**parameters)
            except Exception as exc:
                raise StageFailed(stage, exc) from exc
        limited: Flow[..., Any] = run.with_options(timeout_seconds=settings.stage_timeout_seconds)
        state = cast(State[Any], limited(**parameters, return_state=True))
        result = state.result(raise_on_failure=False)
        if state.name == "TimedOut":
            limit = settings.stage_timeout_seconds
            raise StageFailed(stage, TimeoutError(f"did not finish within {limit:g} s (stage_timeout_seconds)"))
        if not state.is_completed():
            cause = result if isinstance(result, BaseException) else RuntimeError(state.message or state.name)
            raise StageFailed(stage, cause)
        return result
    except StageFailed as failure:
        summary.stages[stage] = f"FAILED: {str(failure.cause).splitlines()[0] if str(failure.cause) else stage}"
        for later in STAGES[STAGES.index(stage) + 1 :]:
            summary.skipped.setdefault(later, f"{stage} failed")
        raise
    finally:
        summary.seconds[stage] = round(time.perf_counter() - start, 1)
