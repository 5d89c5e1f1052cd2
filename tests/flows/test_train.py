"""The `train` flow under a real Prefect server against moto over HTTP, with faults injected by a proxy."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
from prefect.client.schemas.objects import StateType

from flows.train import TrainOutcome, train
from oncology_model.classifier import Classifier
from oncology_model.data import COLUMNS
from oncology_model.errors import DataValidationError
from oncology_model.versioning import VERSION_PATTERN
from oncology_pipeline import layout, s3store
from oncology_pipeline.errors import ConfigurationError
from oncology_pipeline.modelstore import read_pointer
from oncology_pipeline.releases import read_record
from tests.support.data import BENIGN_ROW, MALIGNANT_ROW, csv_bytes
from tests.support.invariant import seed_production
from tests.support.prefect_runs import artifacts, flow_run, task_runs
from tests.support.stacks import Stack, bucket_keys, s3_data_uri

FAKE_IMAGE = "registry.local/oncology-webservice@sha256:" + "e" * 64
#: Confirmed cases as the monitor flow writes them: header, sample ids from 10^15, both classes.
LABELLED = csv_bytes(
    [[10**15 + 1, *BENIGN_ROW, 2], [10**15 + 2, *MALIGNANT_ROW, 4], [10**15 + 3, *BENIGN_ROW, 2]], header=COLUMNS
)


def _add_labelled(stack: Stack, run: str, data: bytes = LABELLED) -> str:
    """Upload a labelled file where the monitor flow writes them; returns its key."""
    key = layout.labelled_key(stack.settings.labelled_prefix, run)
    s3store.put_bytes(stack.s3, stack.settings.data_bucket, key, data, "text/csv")
    return key


def _in_production(stack: Stack, outcome: TrainOutcome) -> None:
    """Make a trained candidate production, as a verified deploy would."""
    seed_production(stack.s3, stack.settings, outcome.bundle_dir, FAKE_IMAGE)


def test_train_stores_a_candidate_with_metrics_and_release_record_and_leaves_production_alone(stack: Stack) -> None:
    state = train(overrides=stack.overrides, return_state=True)
    assert state.type is StateType.COMPLETED
    outcome: TrainOutcome = state.result()
    version = outcome.version
    assert VERSION_PATTERN.match(version)
    settings = stack.settings

    assert bucket_keys(stack.s3, settings.model_bucket) == {
        f"models/{version}/model.skops",
        f"models/{version}/metadata.json",
        f"releases/{version}.json",
    }
    assert bucket_keys(stack.s3, settings.metrics_bucket) == {
        f"trainer/metrics/metrics-{version}.json",
        "trainer/metrics/history.csv",
        "trainer/metrics/quicksight-manifest.json",
    }
    assert set(outcome.s3_uris) == {
        f"s3://{settings.model_bucket}/{k}"
        for k in bucket_keys(stack.s3, settings.model_bucket)
        if k.startswith("models/")
    } | {f"s3://{settings.metrics_bucket}/{k}" for k in bucket_keys(stack.s3, settings.metrics_bucket)}
    assert read_pointer(stack.s3, settings.model_bucket, "models") is None  # a candidate, not production
    record = read_record(stack.s3, settings.model_bucket, version)
    assert record is not None and record.outcome.startswith("candidate") and not record.production
    assert record.gate.passed is True and record.data.sha256 and record.code.lock_sha256
    etag = stack.s3.head_object(Bucket=settings.data_bucket, Key=settings.data_key)["ETag"].strip('"')
    assert [f.model_dump() for f in record.training_data] == [
        {
            "bucket": settings.data_bucket,
            "key": settings.data_key,
            "etag": etag,
            "sha256": record.data.sha256,
            "rows_read": 699,
            "rows_kept": 699,
        }
    ]
    metrics = json.loads(
        stack.s3.get_object(Bucket=settings.metrics_bucket, Key=f"trainer/metrics/metrics-{version}.json")[
            "Body"
        ].read()
    )
    assert metrics["gate"]["passed"] is True
    assert metrics["evaluation"]["metrics"]["recall"]["value"] >= 0.95
    manifest = json.loads(
        stack.s3.get_object(Bucket=settings.metrics_bucket, Key="trainer/metrics/quicksight-manifest.json")[
            "Body"
        ].read()
    )
    assert manifest["fileLocations"][0]["URIs"] == [f"s3://{settings.metrics_bucket}/trainer/metrics/history.csv"]

    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert flow_run(run_id).name == f"train-{version}"
    runs = task_runs(run_id)
    expected = {
        "download_training_data",
        "validate_data",
        "fetch_model_bundle",
        "load_champion",
        "train_candidate",
        "upload_model_bundle",
        "upload_reports",
        "record_metrics_history",
    }
    assert expected <= set(runs)
    assert all(runs[name].state_type is StateType.COMPLETED for name in expected)
    # no task run carries a tag: each tag costs the run a tag-concurrency lease round trip with the server
    assert not any(run.tags for run in runs.values())
    keys = {a.key for a in artifacts(run_id)}
    assert {"data-validation-report", "model-metrics", "quality-gate", "model-bundle-objects", "candidate"} <= keys
    candidate = next(a for a in artifacts(run_id) if a.key == "candidate")
    assert f"--param model_version={version}" in str(candidate.data)
    bundle_uri = f"s3://{settings.model_bucket}/models/{version}/model.skops"
    (objects,) = [a for a in artifacts(run_id) if a.key == "model-bundle-objects"]
    assert bundle_uri in str(objects.data) and "](" not in str(objects.data)  # s3:// text, no link that answers 403
    assert all(a.key for a in artifacts(run_id))  # no keyless duplicates


def test_second_run_uses_the_etag_cache_trains_on_a_new_labelled_file_and_grows_the_history(
    stack: Stack, real_csv: bytes
) -> None:
    first: TrainOutcome = train(overrides=stack.overrides)
    _in_production(stack, first)
    labelled_key = _add_labelled(stack, "20261201T020000Z")
    stack.proxy.log.clear()
    second: TrainOutcome = train(overrides=stack.overrides)
    data_key = f"/{stack.settings.data_bucket}/{stack.settings.data_key}"
    assert stack.proxy.count("HEAD", data_key) == 1
    assert stack.proxy.count("GET", data_key) == 0  # same ETag: served from the local cache
    assert stack.proxy.count("GET", f"/{stack.settings.data_bucket}/{labelled_key}") == 1  # its ETag from the listing
    record = read_record(stack.s3, stack.settings.model_bucket, second.version)
    assert record is not None
    assert [(f.key, f.sha256, f.rows_kept) for f in record.training_data] == [
        (stack.settings.data_key, hashlib.sha256(real_csv).hexdigest(), 699),
        (labelled_key, hashlib.sha256(LABELLED).hexdigest(), 3),
    ]
    assert record.data.rows_kept == 702  # trained on both

    pointer = read_pointer(stack.s3, stack.settings.model_bucket, "models")
    assert pointer is not None and pointer.model_version == first.version  # training never moves production
    kept = bucket_keys(stack.s3, stack.settings.model_bucket)
    assert f"models/{first.version}/model.skops" in kept  # kept for rollback
    history = stack.s3.get_object(Bucket=stack.settings.metrics_bucket, Key="trainer/metrics/history.csv")[
        "Body"
    ].read()
    rows = list(csv.DictReader(io.StringIO(history.decode())))
    assert [r["model_version"] for r in rows] == [first.version, second.version]
    assert rows[1]["champion_version"] == first.version and rows[1]["gate_passed"] == "True"
    assert (rows[0]["rows_kept"], rows[1]["rows_kept"]) == ("699", "702")


def test_transient_faults_are_retried_and_survived(stack: Stack) -> None:
    s = stack.settings
    stack.proxy.reset(method="HEAD", path=f"/{s.data_bucket}/{s.data_key}")
    stack.proxy.fail(503, method="PUT", path="/model.skops")
    state = train(overrides=stack.overrides, return_state=True)
    assert state.type is StateType.COMPLETED
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    runs = task_runs(run_id)
    assert runs["download_training_data"].run_count == 2
    assert runs["upload_model_bundle"].run_count == 2
    assert runs["validate_data"].run_count == 1


def test_wrong_credentials_fail_at_once_without_retries(stack: Stack) -> None:
    stack.proxy.deny_access_key("testing")
    state = train(overrides=stack.overrides, return_state=True)
    assert state.type is StateType.FAILED
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    download = task_runs(run_id)["download_training_data"]
    assert download.state_type is StateType.FAILED and download.run_count == 1
    with pytest.raises(ConfigurationError) as failure:
        state.result()
    message = str(failure.value)
    assert message.startswith(s3_data_uri(stack)) and "403" in message and "check the credentials" in message


def test_missing_bucket_fails_at_once_and_says_what_to_fix(stack: Stack) -> None:
    state = train(overrides={**stack.overrides, "data_bucket": "no-such-bucket-here"}, return_state=True)
    assert state.type is StateType.FAILED
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    download = task_runs(run_id)["download_training_data"]
    assert download.run_count == 1
    with pytest.raises(ConfigurationError) as failure:
        state.result()
    message = str(failure.value)
    assert message.startswith("s3://no-such-bucket-here/") and "the bucket does not exist" in message


def test_gate_blocks_a_worse_challenger_and_production_stays(stack: Stack) -> None:
    champion: TrainOutcome = train(overrides=stack.overrides)
    _in_production(stack, champion)
    weak = {
        **stack.overrides,
        "estimator": "random_forest",
        "hyperparameters": {"n_estimators": 1, "max_depth": 1},
        "gate": {"min_recall": 0.0, "min_roc_auc": 0.0, "min_accuracy": 0.0, "min_specificity": 0.0},
    }
    state = train(overrides=weak, return_state=True)
    assert state.type is StateType.FAILED
    assert "is worse than the champion" in str(state.message) and champion.version in str(state.message)
    pointer = read_pointer(stack.s3, stack.settings.model_bucket, "models")
    assert pointer is not None and pointer.model_version == champion.version
    model_keys = bucket_keys(stack.s3, stack.settings.model_bucket)
    uploaded = {k.split("/")[1] for k in model_keys if k.startswith("models/") and k.count("/") == 2}
    assert uploaded == {champion.version}  # nothing else uploaded
    records = {k for k in model_keys if k.startswith("releases/")}
    assert len(records) == 2 and f"releases/{champion.version}.json" in records
    (weak_record,) = records - {f"releases/{champion.version}.json"}
    rejected = read_record(stack.s3, stack.settings.model_bucket, weak_record.split("/")[1].removesuffix(".json"))
    assert rejected is not None and rejected.outcome == "rejected by the gate" and not rejected.production
    history = stack.s3.get_object(Bucket=stack.settings.metrics_bucket, Key="trainer/metrics/history.csv")[
        "Body"
    ].read()
    assert [r["gate_passed"] for r in csv.DictReader(io.StringIO(history.decode()))] == ["True", "False"]


def test_a_failure_mid_upload_leaves_the_previous_production_model_intact(stack: Stack) -> None:
    champion: TrainOutcome = train(overrides=stack.overrides)
    _in_production(stack, champion)
    before = stack.s3.get_object(Bucket=stack.settings.model_bucket, Key="models/production.json")["Body"].read()
    stack.proxy.fail(403, method="PUT", path="/metadata.json", count=10)  # permanent: no retry can help
    state = train(overrides=stack.overrides, return_state=True)
    assert state.type is StateType.FAILED
    after = stack.s3.get_object(Bucket=stack.settings.model_bucket, Key="models/production.json")["Body"].read()
    assert after == before
    pointer = read_pointer(stack.s3, stack.settings.model_bucket, "models")
    assert pointer is not None and pointer.model_version == champion.version
    for key in pointer.keys:
        assert stack.s3.head_object(Bucket=stack.settings.model_bucket, Key=key)["ContentLength"] > 0


def test_a_feature_missing_in_more_than_max_missing_share_fails_validation_naming_it(stack: Stack) -> None:
    """The setting reaches validation: the real data (16 of 699 bare_nuclei missing, 2.3 %) is refused at 1 %."""
    state = train(overrides={**stack.overrides, "max_missing_share": 0.01}, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(DataValidationError) as failure:
        state.result()
    assert str(failure.value).startswith(
        f"{s3_data_uri(stack)}: bare_nuclei is missing in 16 of 699 valid rows, more than the allowed share of 1% "
        "(max_missing_share)"
    )
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert task_runs(run_id)["validate_data"].state_type is StateType.FAILED
    assert "train_candidate" not in task_runs(run_id)
    assert not [k for k in bucket_keys(stack.s3, stack.settings.model_bucket) if k.startswith("models/")]


def test_a_bad_labelled_file_fails_validation_naming_the_file_and_the_row(stack: Stack) -> None:
    _add_labelled(stack, "20261201T020000Z")
    key = _add_labelled(stack, "20261202T020000Z", LABELLED.replace(b"\n1000000000000002,", b"\n1000000000000002x,"))
    state = train(overrides=stack.overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(DataValidationError) as failure:
        state.result()
    assert (
        str(failure.value)
        .splitlines()[0]
        .startswith(
            f"s3://{stack.settings.data_bucket}/{key}: 1 of 3 rows are invalid, more than the allowed share of 5%"
        )
    )
    assert failure.value.problems == ["row 3: sample_id: must be a positive integer, got '1000000000000002x'"]
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert "train_candidate" not in task_runs(run_id)


def test_per_run_training_settings_reach_the_split_the_folds_the_threshold_and_the_bundle(stack: Stack) -> None:
    changes = {"test_size": 0.3, "cv_folds": 3, "decision_threshold": 0.35}
    outcome: TrainOutcome = train(overrides={**stack.overrides, **changes, "gate": {"min_recall": 0.9}})

    bucket = stack.settings.metrics_bucket
    key = f"trainer/metrics/metrics-{outcome.version}.json"
    metrics = json.loads(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert metrics["evaluation"]["n_test"] == 210 and metrics["evaluation"]["threshold"] == 0.35
    assert {name: len(scores) for name, scores in metrics["evaluation"]["cv_scores"].items()} == {
        "roc_auc": 3,
        "recall": 3,
        "accuracy": 3,
    }
    assert metrics["rows"] == {"read": 699, "kept": 699, "train": 489, "test": 210}
    served = Classifier.from_bundle(outcome.bundle_dir)
    assert served.threshold == served.metadata.config.decision_threshold == 0.35
    record = read_record(stack.s3, stack.settings.model_bucket, outcome.version)
    assert record is not None
    assert {name: record.training[name] for name in changes} == changes


def test_a_bad_per_run_training_setting_fails_the_run_in_one_line_before_any_task(stack: Stack) -> None:
    state = train(overrides={**stack.overrides, "cv_folds": 1}, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ConfigurationError) as failure:
        state.result()
    assert str(failure.value) == "invalid setting cv_folds: Input should be greater than or equal to 2 (got 1)"
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert task_runs(run_id) == {}
