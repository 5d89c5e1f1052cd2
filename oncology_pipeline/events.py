"""The Prefect events the monitor flow emits and `alerts` turns into notifications: one home for their names, light
enough for the `alerts` command to import without the monitoring code."""

#: A realised-recall alarm (one per model version).
RECALL_ALARM_EVENT = "oncology.monitor.recall-below-gate"
#: A drift verdict (one per drifting model version).
DRIFT_EVENT = "oncology.drift.detected"
