"""The pipeline's alerts as Prefect automations (definitions only; `alerts.apply` puts them on a server).

Each alert sends one notification through a notification block; one more automation marks a run whose heartbeats
stopped Crashed, so that the failed-run alert covers runs that died with their worker or machine. The texts are
Jinja templates that the Prefect server renders when it acts: `flow`, `flow_run`, `deployment` are read from its
API, `event` is the event that triggered (or, for the proactive alert, opened the window), `ui_url` links into the
Prefect UI.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect.automations import AutomationCore, ChangeFlowRunState, EventTrigger, Posture, SendNotification
from prefect.client.schemas.objects import StateType

from oncology_pipeline.events import CLUSTER_DRIFT_EVENT, DRIFT_EVENT, RECALL_ALARM_EVENT
from tasks.runs import NESTED_PREFIX

#: Every flow of this project (the names in `@flow(name=...)`).
PIPELINE_FLOWS = ("train-test-publish-deploy", "train", "test", "publish", "deploy", "rollback", "cleanup", "monitor")
#: A run that ends in one of these states failed (TimedOut is a Failed state with its own name).
FAILURE_STATES = ("Failed", "Crashed", "TimedOut")
NIGHTLY_FLOW, NIGHTLY_DEPLOYMENT = "train-test-publish-deploy", "nightly"
#: The first sign that a nightly run is due: picked up by a worker, marked Late by the server (no worker took it
#: in time), or held back by the deployment's concurrency limit; Running covers runs started without Pending.
NIGHTLY_DUE = ("Pending", "Late", "AwaitingConcurrencySlot", "Running")
#: What a live flow run sends every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (nested runs too: each flow run's
#: engine sends its own, prefect/flow_engine.py `_send_heartbeats`), and the states after which none comes.
HEARTBEAT = "prefect.flow-run.heartbeat"
FINAL_STATES = ("Completed", "Failed", "Crashed", "Cancelled", "TimedOut")
#: A run that misses this many heartbeats in a row is dead.
MISSED_HEARTBEATS = 3

FAILED_RUN = "oncology: pipeline run failed"
NIGHTLY_OVERDUE = "oncology: nightly not completed in time"
RECALL_BELOW_GATE = "oncology: realised recall below the gate"
INPUT_DRIFT = "oncology: input drift"
CLUSTER_DRIFT = "oncology: cluster drifted from production"
SILENT_RUN = "oncology: run without heartbeats marked Crashed"
NAMES = (FAILED_RUN, NIGHTLY_OVERDUE, RECALL_BELOW_GATE, INPUT_DRIFT, CLUSTER_DRIFT, SILENT_RUN)
TAGS = ["oncology", "alerts"]

FAILED_SUBJECT = "[oncology] {{ flow.name }} {{ flow_run.state.name }}: {{ flow_run.name }}"
FAILED_BODY = """\
Flow: {{ flow.name }}
Flow run: {{ flow_run.name }}
State: {{ flow_run.state.name }}
Reason: {{ flow_run.state.message }}
Deployment: {{ deployment.name or "none (started without a deployment)" }}
URL: {{ flow_run|ui_url }}"""

OVERDUE_SUBJECT = "[oncology] nightly not completed within __HOURS__ h: {{ flow_run.name }}"
OVERDUE_BODY = """\
The nightly run has not reached Completed within __HOURS__ h of becoming due.
Flow: {{ flow.name }}
Deployment: {{ deployment.name }}
Flow run: {{ flow_run.name }}
Scheduled for: {{ flow_run.expected_start_time }}
Due since: {{ event.occurred }} ({{ event.event }})
State now: {{ flow_run.state_name }}
URL: {{ flow_run|ui_url }}"""


RECALL_SUBJECT = "[oncology] realised recall of {{ event.payload.model_version }} below the gate"
RECALL_BODY = """\
Model version: {{ event.payload.model_version }}
Realised recall: {{ event.payload.recall }} (95 % Wilson interval {{ event.payload.recall_low }} - \
{{ event.payload.recall_high }}, {{ event.payload.confirmed_malignant }} confirmed malignant cases)
The gate's minimum recall: {{ event.payload.min_recall }}
Predictions from {{ event.payload.window_start }} to {{ event.payload.window_end }}
Figures: {{ event.payload.performance }}
Even the interval's upper bound is below the minimum (a one-sided test at 2.5 %)."""

DRIFT_SUBJECT = "[oncology] input drift for {{ event.payload.model_version }}: {{ event.payload.features }}"
DRIFT_BODY = """\
Model version: {{ event.payload.model_version }}
Drifting: {{ event.payload.features }}
Window: {{ event.payload.window_start }} to {{ event.payload.window_end }} ({{ event.payload.rows }} predictions)
Rule: Holm-adjusted chi-square p below {{ event.payload.alpha }} and PSI above its no-drift 95th percentile
Figures and chart: {{ event.payload.drift }}
Retraining waits for confirmed cases: {{ event.payload.new_confirmed_cases }} new this run; the nightly retrains \
when they arrive, never on drift alone."""

CLUSTER_DRIFT_SUBJECT = "[oncology] the cluster does not serve production {{ event.payload.model_version }} as recorded"
CLUSTER_DRIFT_BODY = """\
Production (the pointer): {{ event.payload.model_version }}, recorded image {{ event.payload.image }}
Deployments: {{ event.payload.selector }} in namespace {{ event.payload.namespace }}
Found: {{ event.payload.drifts }}
Action: {{ event.payload.action }}
The pointer never moves to what was found. Flow run: {{ flow_run.name }} ({{ flow_run|ui_url }})"""


def _notify(
    block_id: UUID, name: str, description: str, trigger: EventTrigger, subject: str, body: str
) -> AutomationCore:
    """An automation that sends one notification (`subject`, `body`) through the block `block_id` when `trigger`
    fires."""
    action = SendNotification(block_document_id=block_id, subject=subject, body=body)
    return AutomationCore(name=name, description=description, tags=TAGS, trigger=trigger, actions=[action])


def _events(states: tuple[str, ...]) -> set[str]:
    return {f"prefect.flow-run.{state}" for state in states}


def failed_run_alert(block_id: UUID) -> AutomationCore:
    """One notification for every run of a pipeline flow that enters Failed, Crashed or TimedOut.

    A stage that fails inside the pipeline alerts once, through the pipeline's run (its state message says
    `failed at <stage>: <reason>`): the stage's own run, named `pipeline-<stage>-<version>`, is left out.
    Retries in between are not failures: AwaitingRetry is none.
    """
    trigger = EventTrigger(
        posture=Posture.Reactive,
        expect=_events(FAILURE_STATES),
        match={"prefect.resource.id": "prefect.flow-run.*", "prefect.resource.name": f"!{NESTED_PREFIX}*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(PIPELINE_FLOWS)},
        for_each={"prefect.resource.id"},
        threshold=1,
        within=timedelta(0),
    )
    description = f"A run of {', '.join(PIPELINE_FLOWS)} ended {', '.join(FAILURE_STATES)}: flow, run, reason, URL."
    return _notify(block_id, FAILED_RUN, description, trigger, FAILED_SUBJECT, FAILED_BODY)


def nightly_overdue_alert(block_id: UUID, hours: float) -> AutomationCore:
    """One notification for every run of the nightly deployment that has not Completed `hours` after it was due.

    What it detects, exactly: per flow run of deployment `nightly` of flow `train-test-publish-deploy`, a window
    opens at the run's first Pending, Late, AwaitingConcurrencySlot or Running event (a worker picks a run up at
    its scheduled time; the server marks an untaken run Late about 15 s after it; later events do not move the
    window). When the window closes `hours` later without a Completed event for that run, the alert fires once.
    So it covers a run still running or stuck, never picked up (no worker), waiting for the concurrency slot, and
    one that ended Failed/Crashed/Cancelled (failures alert at once as well, see `failed_run_alert`).
    It cannot see a run that was never created (a deleted or paused schedule, a deployment that was removed).
    """
    within = timedelta(hours=hours)
    if within < timedelta(seconds=10):
        raise ValueError(f"nightly_deadline_hours: {hours} h is under the 10 s that Prefect's proactive triggers need")
    trigger = EventTrigger(
        posture=Posture.Proactive,
        after=_events(NIGHTLY_DUE),
        expect=_events(("Completed",)),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=[
            {"prefect.resource.role": "flow", "prefect.resource.name": NIGHTLY_FLOW},
            {"prefect.resource.role": "deployment", "prefect.resource.name": NIGHTLY_DEPLOYMENT},
        ],
        for_each={"prefect.resource.id"},
        threshold=1,
        within=within,
    )
    shown = f"{hours:g}"
    description = f"{NIGHTLY_FLOW}/{NIGHTLY_DEPLOYMENT} has not Completed within {shown} h of becoming due."
    subject, body = (text.replace("__HOURS__", shown) for text in (OVERDUE_SUBJECT, OVERDUE_BODY))
    return _notify(block_id, NIGHTLY_OVERDUE, description, trigger, subject, body)


def silent_run_crash(heartbeat_seconds: float) -> AutomationCore:
    """Mark a run of a pipeline flow Crashed when MISSED_HEARTBEATS heartbeats in a row did not come (Prefect's
    zombie-run pattern, docs: v3/advanced/detect-zombie-flows); the failed-run alert then fires for it.

    What it detects, exactly: per flow run, each heartbeat opens a window of MISSED_HEARTBEATS x `heartbeat_seconds`;
    the next heartbeat or a final state (Completed, Failed, Crashed, Cancelled, TimedOut) closes it quietly. A window
    that closes empty proposes Crashed (not forced: the server refuses it for a run that ended meanwhile). That is
    a run whose process died without a word: its worker, pod or machine was lost, or the worker died with it. When
    the worker survives it marks the run Crashed itself, but not the run's nested stage runs (`pipeline-<stage>-...`):
    they send their own heartbeats from the same process, so this marks them Crashed as well (quietly: the pipeline's
    run alerts). A run that never sent a heartbeat (one killed in the instant between Running and its first
    heartbeat) is left to the nightly deadline.

    `heartbeat_seconds` must be the PREFECT_FLOWS_HEARTBEAT_FREQUENCY of every process that runs these flows
    against the server (the worker's environment, the Kubernetes job template): a process that beats less often
    would see its live runs marked Crashed.
    """
    within = timedelta(seconds=MISSED_HEARTBEATS * heartbeat_seconds)
    if within < timedelta(seconds=10):
        raise ValueError(f"heartbeat window {within.total_seconds():g} s: under the 10 s proactive triggers need")
    trigger = EventTrigger(
        posture=Posture.Proactive,
        after={HEARTBEAT},
        expect={HEARTBEAT} | _events(FINAL_STATES),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(PIPELINE_FLOWS)},
        for_each={"prefect.resource.id"},
        threshold=1,
        within=within,
    )
    window = f"{within.total_seconds():g} s"
    message = (
        f"No heartbeat for {window} (one expected every {heartbeat_seconds:g} s): the process running this flow run "
        f"is gone (worker, pod or machine lost). Marked Crashed by the automation {SILENT_RUN!r}."
    )
    return AutomationCore(
        name=SILENT_RUN,
        description=f"A run of a pipeline flow sent no heartbeat for {window}: mark it Crashed (the failed-run alert "
        "follows).",
        tags=TAGS,
        trigger=trigger,
        actions=[ChangeFlowRunState(name="Crashed", state=StateType.CRASHED, message=message, force=False)],
    )


def recall_alert(block_id: UUID) -> AutomationCore:
    """One notification per recall-alarm event of the monitor flow: the version, its realised recall with the
    interval and case count, the gate's minimum and the window."""
    description = "The monitor flow found a serving version's realised recall credibly below the gate's minimum."
    return _notify(
        block_id, RECALL_BELOW_GATE, description, _per_version(RECALL_ALARM_EVENT), RECALL_SUBJECT, RECALL_BODY
    )


def _per_version(event: str) -> EventTrigger:
    """Fires once for each `event` of a model version."""
    return EventTrigger(
        posture=Posture.Reactive,
        expect={event},
        match={"prefect.resource.id": "oncology.model-version.*"},
        for_each={"prefect.resource.id"},
        threshold=1,
        within=timedelta(0),
    )


def drift_alert(block_id: UUID) -> AutomationCore:
    """One notification per drift event of the monitor flow: the version, the drifting inputs, the window and how
    many confirmed cases retraining has."""
    description = "The monitor flow found the inputs of a serving version drifting from its training data."
    return _notify(block_id, INPUT_DRIFT, description, _per_version(DRIFT_EVENT), DRIFT_SUBJECT, DRIFT_BODY)


def cluster_drift_alert(block_id: UUID) -> AutomationCore:
    """One notification per cluster-drift event of a pipeline, deploy or rollback run: production's version and
    recorded image, where the cluster disagreed, and what the run did about it (repair, or alert only)."""
    description = "A run found the cluster running or serving something else than production's records say."
    return _notify(
        block_id,
        CLUSTER_DRIFT,
        description,
        _per_version(CLUSTER_DRIFT_EVENT),
        CLUSTER_DRIFT_SUBJECT,
        CLUSTER_DRIFT_BODY,
    )


def alert_automations(block_id: UUID, nightly_deadline_hours: float, heartbeat_seconds: float) -> list[AutomationCore]:
    """Every alert of the pipeline, delivered through the notification block `block_id`, and the automation that
    marks a run whose heartbeats (every `heartbeat_seconds`) stopped Crashed."""
    return [
        failed_run_alert(block_id),
        nightly_overdue_alert(block_id, nightly_deadline_hours),
        recall_alert(block_id),
        drift_alert(block_id),
        cluster_drift_alert(block_id),
        silent_run_crash(heartbeat_seconds),
    ]
