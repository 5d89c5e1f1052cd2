"""What one pipeline run did, stage by stage: for the UI, the demo's output and the run directory."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from oncology_model.evaluation import COUNTS

STAGES = ("train", "test", "publish", "deploy")
CELL_WIDTH = 90  # characters of a table cell: the table fits a 1,600 px page; details follow below it


def table_cell(text: str, width: int = CELL_WIDTH) -> str:
    """One markdown table cell: the first line, `|` escaped, cut at `width` characters."""
    line = text.strip().splitlines()[0] if text.strip() else "-"
    line = line if len(line) <= width else line[: width - 1] + "…"
    return line.replace("|", "\\|")


class PipelineSummary(BaseModel):
    """Filled in as the stages pass; a stage that did not run says why in `skipped`."""

    version: str
    stages: dict[str, str] = Field(default_factory=dict, description="stage -> outcome in a few words")
    skipped: dict[str, str] = Field(default_factory=dict, description="stage -> why it did not run")
    metrics: dict[str, float] = Field(default_factory=dict)
    gate: list[str] = Field(default_factory=list)
    coverage: dict[str, float] = Field(default_factory=dict)
    image: str | None = None
    rollout: str | None = None
    reconcile: str | None = Field(default=None, description="what the run found in the cluster and did about it")
    drifts: list[str] = Field(default_factory=list, description="where the cluster disagreed with production's records")
    s3_uris: list[str] = Field(default_factory=list)
    seconds: dict[str, float] = Field(default_factory=dict, description="wall time per stage")
    started_at: dict[str, datetime] = Field(default_factory=dict, description="when each stage started (UTC)")

    def times(self, stage: str) -> dict[str, Any]:
        """The stage's start, end, seconds and outcome, for the release record."""
        started = self.started_at.get(stage)
        seconds = self.seconds.get(stage)
        ended = started + timedelta(seconds=seconds) if started and seconds is not None else None
        return {"started_at": started, "ended_at": ended, "seconds": seconds, "outcome": self.stages.get(stage)}

    def skip(self, reasons: dict[str, str]) -> PipelineSummary:
        """Stages that were not asked for, and why; the summary itself."""
        self.skipped |= reasons
        return self

    def markdown(self) -> str:
        """The summary as markdown."""
        lines = [f"# Pipeline {self.version}", "", "| stage | outcome | seconds |", "|---|---|---:|"]
        for stage in STAGES:
            outcome = self.stages.get(stage) or f"skipped: {self.skipped.get(stage, 'not reached')}"
            lines.append(f"| {stage} | {table_cell(outcome)} | {self.seconds.get(stage, 0):.1f} |")
        if self.metrics:
            lines += ["", "Hold-out metrics: " + ", ".join(f"{k} {_metric(k, v)}" for k, v in self.metrics.items())]
        if self.gate:
            lines += ["", "Quality gate:"] + [f"- {reason}" for reason in self.gate]
        if self.coverage:
            lines += ["", "Coverage: " + ", ".join(f"{k} {v:.1f} %" for k, v in self.coverage.items())]
        lines += ["", f"Image: `{self.image or '-'}`", "", f"Rollout: {self.rollout or '-'}"]
        if self.reconcile:
            lines += ["", f"Cluster: {self.reconcile}"] + [f"- drift: {drift}" for drift in self.drifts]
        if self.s3_uris:
            lines += ["", "S3 objects written:"] + [f"- `{uri}`" for uri in self.s3_uris]
        return "\n".join(lines)


def _metric(name: str, value: float) -> str:
    """A confusion-matrix count as the integer it is, any other metric to four places."""
    return f"{value:.0f}" if name in COUNTS else f"{value:.4f}"
