"""The demo's console: one line as each flow run starts and ends; every other log line goes to a file."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class StageLines(logging.Handler):
    """Prints `<time> <flow> started` and `<flow> <state> in <seconds>` for every flow run, from Prefect's
    "Beginning ... flow run" and "Finished in state" records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message, flow = record.getMessage(), getattr(record, "flow_name", None)
        run_id = str(getattr(record, "flow_run_id", ""))
        if flow is None:
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        if message.startswith("Beginning "):
            self.started[run_id] = record.created
            sys.stdout.write(f"{stamp}  {flow:<26} started\n")
        elif message.startswith("Finished in state "):
            state = message.removeprefix("Finished in state ").split("(", 1)[0]
            seconds = record.created - self.started.pop(run_id, record.created)
            sys.stdout.write(f"{stamp}  {flow:<26} {state} in {seconds:.1f} s\n")
        sys.stdout.flush()


def quiet_console(log_file: Path) -> None:
    """Before Prefect is imported: its console shows warnings and errors only; everything (Prefect, moto's
    access log) goes to `log_file`; each flow run prints a start and an end line."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    import prefect.main  # noqa: F401  (configures Prefect's logging now, so that it keeps the handlers below)

    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file, mode="w")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(to_file)
    werkzeug = logging.getLogger("werkzeug")  # moto server's access log: the file only
    werkzeug.handlers, werkzeug.propagate = [to_file], False
    werkzeug.setLevel(logging.INFO)
    logging.getLogger("prefect.flow_runs").addHandler(StageLines())
