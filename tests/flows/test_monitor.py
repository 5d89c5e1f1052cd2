"""The monitor flow: the prediction log (written by the service's own writer) joined to outcome files; realised
performance in S3 and the UI; the joined cases become a labelled file once, never twice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from oncology_model.bundle import ModelMetadata
from oncology_model.data import parse_csv
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, Prediction
from oncology_model.predictionlog import PredictionLog
from oncology_pipeline import layout
from oncology_pipeline.driftwatch import NO_REFERENCE
from oncology_pipeline.labelled import sample_id
from tests.support.stacks import Stack, bucket_keys

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
    # NEW's deploy verification: a golden batch of 4 rows, logged like any request, in no figure of real traffic.
    verification = PredictionLog(
        stack.s3, stack.settings.prediction_log_bucket, "predictions", pod="pod-verify", model_version=NEW
    )
    golden = [EXAMPLE_MALIGNANT] * 4
    verification.add(f"verify-{NEW}-0a1b2c3d", golden, [(Prediction.MALIGNANT, 0.9)] * 4, True)
    verification.close()
    rows = [f"old-{n},4,2099-01-01T00:00:00Z" for n in range(10)] + [
        f"new-{n},2,2099-01-01T00:00:00Z" for n in range(2)
    ]
    bad = [
        "unknown-1,4,2099-01-01T00:00:00Z",
        "new-2,7,2099-01-01T00:00:00Z",
        f"verify-{NEW}-0a1b2c3d/0,4,2099-01-01T00:00:00Z",
    ]
    body = "request_id,diagnosis,confirmed_at\n" + "\n".join(rows + bad) + "\n"
    stack.s3.put_object(Bucket=stack.settings.data_bucket, Key="outcomes/2026-12-03.csv", Body=body.encode())
    overrides = {**stack.overrides, "min_confirmed_malignant": 10}

    first = monitor(overrides=overrides)

    assert (first.records, first.joined, first.alarms) == (13 + 4, 12, [OLD])
    metrics = stack.settings.metrics_bucket
    assert {k for k in bucket_keys(stack.s3, metrics) if k.startswith("monitoring/")} == {
        layout.monitoring_key(name, document)
        for name in (first.s3_uris[0].split("/")[-2], "latest")
        for document in ("performance.json", "drift.json")
    }
    assert [(v.model_version, v.verdict) for v in first.drift.versions] == [(OLD, NO_REFERENCE), (NEW, NO_REFERENCE)]
    latest = json.loads(
        stack.s3.get_object(Bucket=metrics, Key=layout.monitoring_key("latest", "performance.json"))["Body"].read()
    )
    old, new = sorted(latest["versions"], key=lambda v: v["model_version"])
    assert (old["served"], old["confirmed"], old["tp"], old["fn"]) == (10, 10, 4, 6)
    assert old["sensitivity"]["value"] == 0.4 and old["recall_alarm"] is True
    assert (new["served"], new["confirmed"], new["tn"], new["fp"]) == (3, 2, 2, 0) and new["recall_alarm"] is False
    assert (old["verification_records"], new["verification_records"]) == (0, 4)
    assert (latest["outcomes_joined"], latest["outcomes_not_joined"]) == (12, 0)  # the verify- row was not used
    assert [v.rows for v in first.drift.versions] == [10, 3]
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


def test_monitor_finds_shifted_inputs_and_waits_for_enough_rows(
    stack: Stack, model_bundle_dir: Path, model_metadata: ModelMetadata, real_csv: bytes
) -> None:
    from flows.monitor import monitor

    metadata = (model_bundle_dir / "metadata.json").read_bytes()
    for version in (OLD, NEW):  # both served the session bundle: its reference is their training data
        key = f"{layout.version_prefix(stack.settings.model_prefix, version)}/metadata.json"
        stack.s3.put_object(Bucket=stack.settings.model_bucket, Key=key, Body=metadata)
    data = parse_csv(real_csv).X
    rows = data[~np.isnan(data).any(axis=1)]
    shifted = rows[np.random.default_rng(3).integers(0, len(rows), 300)].astype(int)
    nuclei = 5  # bare_nuclei
    shifted[:, nuclei] = np.minimum(shifted[:, nuclei] + 3, 10)
    for version, window, prefix in ((OLD, shifted, "shifted"), (NEW, rows[:50].astype(int), "few")):
        log = PredictionLog(stack.s3, stack.settings.prediction_log_bucket, "predictions", f"pod-{prefix}", version)
        for n, row in enumerate(window):
            tumor = dict(zip(model_metadata.features, map(int, row), strict=True))
            log.add(f"{prefix}-{n}", [tumor], [(Prediction.BENIGN, 0.1)], False)
        log.close()

    state = monitor(overrides=stack.overrides, return_state=True)
    outcome = state.result()

    old, new = outcome.drift.versions
    assert old.model_version == OLD and old.verdict.startswith("drift: ") and "bare_nuclei" in old.verdict
    assert new.verdict == "insufficient data (50 rows, need 200)"
    assert old.report is not None and {f.feature for f in old.report.features if f.drifts} >= {"bare_nuclei"}
    run = outcome.s3_uris[0].split("/")[-2]
    drift = json.loads(
        stack.s3.get_object(Bucket=stack.settings.metrics_bucket, Key=layout.monitoring_key("latest", "drift.json"))[
            "Body"
        ].read()
    )
    assert [v["verdict"] for v in drift["versions"]] == [old.verdict, new.verdict]
    chart = stack.s3.get_object(
        Bucket=stack.settings.metrics_bucket, Key=layout.monitoring_key(run, f"drift-{OLD}.svg")
    )
    assert chart["ContentType"] == "image/svg+xml" and b"bare_nuclei" in chart["Body"].read()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        only_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        found = client.read_artifacts(artifact_filter=only_this_run)
    shown = {a.key: str(a.data) for a in found if a.key == "drift"}
    charts = [str(a.data) for a in found if a.key == "drift-chart"]  # one per version judged
    bare_nuclei = next(line for line in shown["drift"].splitlines() if line.startswith("| bare\\_nuclei |"))
    assert bare_nuclei.endswith("| **drift** |") and "insufficient data (50 rows, need 200)" in shown["drift"]
    assert "Drift alone never retrains" in shown["drift"]
    assert len(charts) == 2 and any(f"drift-{OLD}.svg?" in url for url in charts)
