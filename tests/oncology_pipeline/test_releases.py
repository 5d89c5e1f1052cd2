"""The release record's schema: records written before it was typed still read, and the builders write one shape."""

from __future__ import annotations

import json
from typing import Any

from oncology_pipeline import releases
from oncology_pipeline.releases import ClusterSection, DeploymentChange, ReleaseRecord, VerificationSection

IMAGE = "127.0.0.1:5000/oncology-webservice@sha256:" + "e2" * 32
OLD = "127.0.0.1:5000/oncology-webservice@sha256:" + "0a" * 32

#: A nightly's record as the code before the typed schema wrote it (dict sections; the image section in the two
#: shapes publish and deploy wrote, merged; the gate as GateDecision dumped it).
WRITTEN_BEFORE: dict[str, Any] = {
    "model_version": "20261207T115826Z-46f107e8",
    "production": True,
    "promoted_at": ["2026-12-07T11:59:40.123456Z"],
    "superseded_by": None,
    "outcome": "released: verified serving, production",
    "fingerprint": {"data_uri": "s3://oncology-training-data/wisconsin.data", "digest": "ab" * 32},
    "data": {"source": "s3://oncology-training-data/wisconsin.data", "etag": '"52b8"', "sha256": "40" * 32,
             "rows_read": 699, "rows_kept": 699},
    "training_data": [{"bucket": "oncology-training-data", "key": "wisconsin.data", "etag": '"52b8"',
                       "sha256": "40" * 32, "rows_read": 699, "rows_kept": 699}],
    "code": {"revision": "90292b5", "lock_sha256": "0e" * 32},
    "training": {"estimator": "logistic_regression", "seed": 42},
    "metrics": {"recall": {"value": 0.98, "ci_low": 0.94, "ci_high": 1.0}},
    "gate": {"passed": True, "reasons": ["recall 0.98 >= 0.95"], "champion": None},
    "tests": {"tests": {"unittest-coverage": 120, "test-coverage": 19}, "coverage": {"unittest-coverage": 81.5}},
    "image": {"repository": IMAGE.split("@")[0], "tag": "20261207T115826Z-46f107e8",
              "digest": IMAGE.split("@")[1], "reference": IMAGE},
    "cluster": {"context": "kube-standin", "namespace": "oncology",
                "deployments": [{"name": "oncology-webservice", "previous_image": OLD, "new_image": IMAGE}]},
    "verification": {"passed": True, "summary": "140 golden cases match"},
    "rollout": {"outcome": "rolled out", "detail": "2/2 replicas updated and available"},
    "flow_runs": {"pipeline": "http://127.0.0.1:4200/flow-runs/flow-run/5b22ad17"},
    "stages": {"deploy": {"started_at": "2026-12-07T11:59:30Z", "ended_at": "2026-12-07T11:59:41Z",
                          "outcome": "verified, promoted"}},
}  # fmt: skip


def test_a_record_written_before_the_schema_reads_whole_and_typed() -> None:
    record = ReleaseRecord.model_validate_json(json.dumps(WRITTEN_BEFORE))
    assert record.gate.passed is True and record.image.reference == IMAGE and record.verification.passed
    assert record.cluster.deployments[0].previous_image == OLD and record.tests.tests["test-coverage"] == 19
    assert record.data.rows_kept == 699 and record.code.revision == "90292b5"
    written = record.model_dump(mode="json")
    for section in ("data", "code", "gate", "tests", "image", "cluster", "verification", "rollout"):
        assert written[section] == WRITTEN_BEFORE[section], section  # unknown fields kept, nothing added
    assert written["gate"]["reasons"] == ["recall 0.98 >= 0.95"]


def test_the_builders_write_one_image_shape_and_a_failed_deploy_says_why() -> None:
    record = ReleaseRecord(model_version="v")
    record = releases.merge(record, releases.published(IMAGE, "v"))
    published = record.model_dump(mode="json")["image"]
    assert published == {
        "repository": IMAGE.split("@")[0],
        "tag": "v",
        "digest": IMAGE.split("@")[1],
        "reference": IMAGE,
    }
    cluster = ClusterSection(namespace="oncology", deployments=[DeploymentChange(name="web", new_image=IMAGE)])
    released = releases.merge(record, releases.rolled_out(cluster, IMAGE, "2/2 updated", "golden cases match"))
    assert released.model_dump(mode="json")["image"] == published  # the deploy's image merges into the same shape
    assert released.verification.passed and released.rollout.outcome == "rolled out"
    check = VerificationSection(passed=False, summary="FAILED: serves model w")
    failed = releases.merge(record, releases.rolled_back(cluster, IMAGE, "serves model w", "web runs old", check))
    assert failed.outcome == "failed at deploy: serves model w" and failed.verification.passed is False
    assert failed.rollout.restored == "web runs old" and not failed.promoting
    unreached = releases.merge(record, releases.rolled_back(cluster, IMAGE, "deadline", None, None))
    assert unreached.verification.passed is None and "verification" not in unreached.model_dump(exclude_defaults=True)
