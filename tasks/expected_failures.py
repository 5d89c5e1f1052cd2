"""Expected failures are one log line: a gate rejection, a red suite or a refused push is news, not a bug.

Prefect logs every exception that ends a task or flow run with its traceback ("Encountered exception during
execution: ..."). For the pipeline's own errors, whose messages say what happened and what to do, the filter
below keeps the line and drops the traceback and the repr; anything else still logs in full.
"""

from __future__ import annotations

import logging

from oncology_model.errors import OncologyModelError
from oncology_pipeline.errors import PipelineError

EXPECTED: tuple[type[BaseException], ...] = (PipelineError, OncologyModelError)
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class ExpectedFailures(logging.Filter):
    """Rewrites the record of an expected error to `failed: <message>`, without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, EXPECTED):
            record.msg, record.args = "failed: %s", (error,)
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Add the filter to Prefect's flow-run and task-run loggers (once)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedFailures) for f in logger.filters):
            logger.addFilter(ExpectedFailures())
