"""The inputs fingerprint and the plan it gives: no change, resume, or everything."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from oncology_model.errors import QualityGateFailed
from oncology_pipeline.errors import SuiteFailed
from oncology_pipeline.fingerprint import Fingerprint, code_sha256, config_sha256, plan_run
from oncology_pipeline.releases import DataFile, ReleaseRecord
from oncology_pipeline.settings import PipelineSettings
from oncology_pipeline.testsuites import run_suite
from tasks.expected_failures import ExpectedFailures

INPUTS = Fingerprint(
    data_uri="s3://data/wisconsin.data",
    data_etag='"abc"',
    data_sha256="1" * 64,
    config_sha256="2" * 64,
    code_sha256="3" * 64,
    lock_sha256="4" * 64,
    base_image="oncology-base:bookworm@sha256:" + "5" * 64,
)
IMAGE = "127.0.0.1:5000/oncology-webservice@sha256:" + "6" * 64


def _record(version: str, digest: str = INPUTS.digest, **fields: object) -> ReleaseRecord:
    return ReleaseRecord.model_validate({"model_version": version, "fingerprint": {"digest": digest}, **fields})


def test_the_digest_changes_with_every_input_and_only_with_them() -> None:
    assert Fingerprint.model_validate(INPUTS.model_dump(exclude={"digest"})).digest == INPUTS.digest
    for field in ("data_sha256", "config_sha256", "code_sha256", "lock_sha256", "base_image", "data_uri"):
        assert INPUTS.model_copy(update={field: "x"}).digest != INPUTS.digest, field
    assert INPUTS.model_copy(update={"data_etag": '"uploaded-again"'}).digest == INPUTS.digest  # the same bytes
    target = PipelineSettings().deploy_target()
    aimed = INPUTS.model_copy(update={"target": target})
    assert aimed.digest != INPUTS.digest
    for name in target:
        assert aimed.model_copy(update={"target": {**target, name: "elsewhere"}}).digest != aimed.digest, name


def test_what_assembles_the_image_is_code_of_the_fingerprint(tmp_path: Path) -> None:
    for name in ("oncology_model/a.py", "Dockerfile", ".dockerignore", "oncology_pipeline/buildcontext.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("one\n")
    first = code_sha256(tmp_path)
    for name in (".dockerignore", "oncology_pipeline/buildcontext.py"):
        (tmp_path / name).write_text("two\n")
        assert code_sha256(tmp_path) != first, name
        first = code_sha256(tmp_path)
    (tmp_path / "oncology_pipeline" / "other.py").write_text("not the image's\n")
    assert code_sha256(tmp_path) == first


def test_labelled_files_enter_the_digest_by_key_and_bytes_not_by_etag() -> None:
    case = DataFile(bucket="data", key="labelled/labelled-1.csv", etag="e1", sha256="7" * 64)
    night = INPUTS.model_copy(update={"labelled_data": [case]})
    assert night.digest != INPUTS.digest
    assert Fingerprint.model_validate(night.model_dump(exclude={"digest"})).digest == night.digest
    for field in ("key", "sha256"):
        other = night.model_copy(update={"labelled_data": [case.model_copy(update={field: "x"})]})
        assert other.digest != night.digest, field
    again = night.model_copy(update={"labelled_data": [case.model_copy(update={"etag": "e2"})]})
    assert again.digest == night.digest  # the same file uploaded again: no new model


def test_settings_that_shape_the_model_change_the_config_hash_and_others_do_not() -> None:
    base = PipelineSettings()
    same = config_sha256(base.model_inputs())
    assert config_sha256(base.with_overrides({"registry_address": "elsewhere:5000"}).model_inputs()) == same
    for change in ({"seed": 7}, {"estimator": "random_forest"}, {"gate": {"min_recall": 0.99}}):
        assert config_sha256(base.with_overrides(change).model_inputs()) != same, change


def test_the_code_hash_follows_file_contents_and_names_but_not_caches(tmp_path: Path) -> None:
    (tmp_path / "oncology_model").mkdir()
    (tmp_path / "oncology_model" / "a.py").write_text("x = 1\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    first = code_sha256(tmp_path)
    (tmp_path / "oncology_model" / "__pycache__").mkdir()
    (tmp_path / "oncology_model" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert code_sha256(tmp_path) == first
    (tmp_path / "oncology_model" / "a.py").write_text("x = 2\n")
    assert code_sha256(tmp_path) != first


@pytest.mark.parametrize(
    ("production", "earlier", "force", "action", "tested", "image"),
    [
        (None, None, False, "full", False, None),
        (_record("p", production=True), None, False, "no-change", False, None),
        (_record("p", production=True), None, True, "full", False, None),
        (_record("p", digest="other"), None, False, "full", False, None),
        (_record("p", digest="other"), _record("e", gate={"passed": False}), False, "full", False, None),
        (_record("p", digest="other"), _record("e", gate={"passed": True}), False, "resume", False, None),
        (
            _record("p", digest="other"),
            _record("e", gate={"passed": True}, tests={"tests": {"unittest-coverage": 1}}),
            False,
            "resume",
            True,
            None,
        ),
        (
            _record("p", digest="other"),
            _record(
                "e",
                gate={"passed": True},
                tests={"tests": {"unittest-coverage": 1}},
                image={"digest": "d", "reference": IMAGE},
            ),
            False,
            "resume",
            True,
            IMAGE,
        ),
        (_record("p", digest="other"), _record("e", digest="stale", gate={"passed": True}), False, "full", False, None),
        (_record("p", digest="other"), _record("e", gate={"passed": True}), True, "full", False, None),
    ],
    ids=[
        "first-night",
        "same-as-production",
        "forced",
        "changed",
        "earlier-rejected",
        "resume-at-test",
        "resume-at-publish",
        "resume-at-deploy",
        "index-names-other-inputs",
        "forced-instead-of-resume",
    ],
)
def test_the_plan(
    production: ReleaseRecord | None,
    earlier: ReleaseRecord | None,
    force: bool,
    action: str,
    tested: bool,
    image: str | None,
) -> None:
    plan = plan_run(INPUTS, production, earlier, force)
    assert (plan.action, plan.tested, plan.image) == (action, tested, image)
    if action == "no-change":
        assert plan.version == "p" and INPUTS.digest[:12] in plan.reason
    if action == "resume":
        assert plan.version == "e" and "e had the same inputs" in plan.reason


ROLLED_BACK = {
    "action": "rollback",
    "to": "v1",
    "replaced": "e",
    "at": "2026-12-07T10:00:00Z",
    "by": "rollback-v1 (http://ui/runs/1)",
    "reason": "recall dropped",
}


@pytest.mark.parametrize(
    ("earlier", "why"),
    [
        (
            _record("e", gate={"passed": True}, image={"digest": "d", "reference": IMAGE}, rolled_back=ROLLED_BACK),
            "e was rolled back to v1 by rollback-v1 (http://ui/runs/1) at 2026-12-07 10:00 UTC: recall dropped",
        ),
        (
            _record("e", gate={"passed": True}, promoted_at=["2026-12-06T02:00:00Z"], superseded_by="c"),
            "e served production before and was replaced by c",
        ),
        (
            _record("e", gate={"passed": True}, verification={"passed": False, "summary": "FAILED: golden case 3"}),
            "e's image failed verification at deploy (FAILED: golden case 3)",
        ),
    ],
    ids=["rolled-back", "replaced-before", "failed-verification"],
)
def test_a_nightly_never_resumes_a_version_held_back_and_says_what_would_release_it(
    earlier: ReleaseRecord, why: str
) -> None:
    plan = plan_run(INPUTS, _record("p", digest="other", production=True), earlier, False)
    assert (plan.action, plan.version, plan.image) == ("held", "e", None)
    assert plan.reason == f"{why}: a nightly does not release it again (release it with model_version=e, or " + (
        "train anew with force=true)"
    )
    assert plan_run(INPUTS, None, earlier, True).action == "full"


def test_a_sibling_of_the_version_an_operator_took_out_is_held_too() -> None:
    """Production v1 was pinned by a rollback that took out e; the index now names f, trained later from e's inputs
    (a forced run): the nightly releases neither."""
    production = _record("v1", digest="other", production=True, pinned=ROLLED_BACK)
    sibling = _record("f", gate={"passed": True}, tests={"tests": {"unittest-coverage": 1}})
    plan = plan_run(INPUTS, production, sibling, False, replaced=_record("e", rolled_back=ROLLED_BACK))
    assert (plan.action, plan.version) == ("held", "e")
    assert plan.reason.startswith("production v1 was put there by hand (rollback by rollback-v1")
    assert "taking out e, which was made from these inputs" in plan.reason
    other = plan_run(INPUTS, production, sibling, False, replaced=_record("e", digest="older", rolled_back=ROLLED_BACK))
    assert (other.action, other.version) == ("resume", "f")  # new inputs since the rollback: a nightly may release


def test_expected_failures_log_one_line_and_other_errors_keep_their_traceback() -> None:
    def record(error: Exception) -> logging.LogRecord:
        try:
            raise error
        except Exception:
            import sys

            return logging.LogRecord(
                "prefect.task_runs", logging.ERROR, __file__, 1, "boom %r", (error,), sys.exc_info()
            )

    quiet = record(QualityGateFailed(["roc_auc 0.9 < 0.99"]))
    assert ExpectedFailures().filter(quiet) and quiet.exc_info is None
    assert quiet.getMessage() == "failed: quality gate failed: roc_auc 0.9 < 0.99"
    loud = record(KeyError("surprise"))
    assert ExpectedFailures().filter(loud) and loud.exc_info is not None and "KeyError" in loud.getMessage()
    assert "Traceback" in logging.Formatter().format(loud)


def test_a_hanging_suite_is_killed_at_its_time_limit(tmp_path: Path) -> None:
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hang():\n    time.sleep(60)\n")
    with pytest.raises(SuiteFailed, match=r"hang: pytest did not finish within 2 s \(test_timeout_seconds\)"):
        run_suite("hang", [str(tmp_path / "test_hang.py")], tmp_path / "out", cwd=tmp_path, timeout=2)
