"""The Prefect events the flows emit and `alerts` turns into notifications: one home for their names and resources,
light enough for the `alerts` command to import without the monitoring code."""

#: A realised-recall alarm (one per model version).
RECALL_ALARM_EVENT = "oncology.monitor.recall-below-gate"
#: A drift verdict (one per drifting model version).
DRIFT_EVENT = "oncology.drift.detected"
#: The cluster does not run or serve production as its records say (one per observation that found it).
CLUSTER_DRIFT_EVENT = "oncology.cluster.drift"


def version_resource(version: str) -> dict[str, str]:
    """The event resource of a model version (the alert automations match `oncology.model-version.*`)."""
    return {"prefect.resource.id": f"oncology.model-version.{version}", "prefect.resource.name": version}
