"""The monitor flow: the prediction log (written by the service's own writer) joined to outcome files; realised
performance in S3 and the UI; the joined cases become a labelled file once, never twice."""

from __future__ import annotations

import json

from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, Prediction
from oncology_model.predictionlog import PredictionLog
from oncology_pipeline import layout
from oncology_pipeline.labelled import sample_id
from tests.flows.conftest import Stack, bucket_keys

OLD, NEW = "20261125T020000Z-402c5853", "20261202T020000Z-9b1e77a0"


def _serve(stack: Stack, version: str, answers: dict[str, Prediction]) -> None:
    """What a pod serving `version` logs for these single predictions."""
    log = PredictionLog(
        stack.s3, stack.settings.prediction_log_bucket, "predictions", pod=f"pod-{version[-8:]}", model_version=version
    )
    for request, label in answers.items():
        log.add(
            request, [EXAMPLE_MALIGNANT if label is Prediction.MALIGNANT else EXAMPLE_BENIGN], [(label, 0.5)], False
        )
    log.close()


def test_monitor_joins_outcomes_reports_performance_and_labels_each_case_once(stack: Stack) -> None:
    from flows.monitor import monitor

    # OLD misses 6 of 10 malignant cases (recall 0.4: the alarm, with min_confirmed_malignant=10); NEW is right.
    _serve(stack, OLD, {f"old-{n}": Prediction.MALIGNANT if n < 4 else Prediction.BENIGN for n in range(10)})
    _serve(stack, NEW, {f"new-{n}": Prediction.BENIGN for n in range(3)})
    rows = [f"old-{n},4,2099-01-01T00:00:00Z" for n in range(10)] + [
        f"new-{n},2,2099-01-01T00:00:00Z" for n in range(2)
    ]
    bad = ["unknown-1,4,2099-01-01T00:00:00Z", "new-2,7,2099-01-01T00:00:00Z"]
    body = "request_id,diagnosis,confirmed_at\n" + "\n".join(rows + bad) + "\n"
    stack.s3.put_object(Bucket=stack.settings.data_bucket, Key="outcomes/2026-12-03.csv", Body=body.encode())
    overrides = {**stack.overrides, "min_confirmed_malignant": 10}

    first = monitor(overrides=overrides)

    assert (first.records, first.joined, first.alarms) == (13, 12, [OLD])
    metrics = stack.settings.metrics_bucket
    assert {k for k in bucket_keys(stack.s3, metrics) if k.startswith("monitoring/")} == {
        layout.monitoring_key(name, "performance.json") for name in (first.s3_uris[0].split("/")[-2], "latest")
    }
    latest = json.loads(
        stack.s3.get_object(Bucket=metrics, Key=layout.monitoring_key("latest", "performance.json"))["Body"].read()
    )
    old, new = sorted(latest["versions"], key=lambda v: v["model_version"])
    assert (old["served"], old["confirmed"], old["tp"], old["fn"]) == (10, 10, 4, 6)
    assert old["sensitivity"]["value"] == 0.4 and old["recall_alarm"] is True
    assert (new["served"], new["confirmed"], new["tn"], new["fp"]) == (3, 2, 2, 0) and new["recall_alarm"] is False
    assert first.labelled is not None
    labelled = stack.s3.get_object(Bucket=stack.settings.data_bucket, Key=first.labelled.split("/", 3)[3])
    lines = labelled["Body"].read().decode().splitlines()
    assert lines[0].startswith("sample_id,clump_thickness") and len(lines) == 1 + 12
    assert {int(line.split(",")[0]) for line in lines[1:]} == {
        sample_id(case) for case in [*(f"old-{n}" for n in range(10)), "new-0", "new-1"]
    }

    second = monitor(overrides=overrides)  # nothing new: no second labelled file
    assert second.joined == 12 and second.labelled is None
    assert len([k for k in bucket_keys(stack.s3, stack.settings.data_bucket) if k.startswith("labelled/")]) == 1
