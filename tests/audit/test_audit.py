"""The supply-chain audit: the allow-list's rules, the verdict on pip-audit's report, and its failure offline."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import audit.__main__ as audit_cli
from audit.__main__ import ALLOWLIST, Accepted, AuditError, Finding, judge, load_allowlist, read_report, run_pip_audit

FINDING = Finding("jinja2", "3.1.4", "PYSEC-2024-1", ("GHSA-aaaa-bbbb-cccc", "CVE-2024-1"), ("3.1.5",))


def _report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


VULNERABLE = {
    "name": "Jinja2",
    "version": "3.1.4",
    "vulns": [{"id": "PYSEC-2024-1", "aliases": ["GHSA-aaaa-bbbb-cccc", "CVE-2024-1"], "fix_versions": ["3.1.5"]}],
}
CLEAN = {"name": "numpy", "version": "2.4.6", "vulns": []}
SKIPPED = {"name": "private-pkg", "skip_reason": "Dependency not found on PyPI and could not be audited"}


@pytest.fixture
def allowlist(tmp_path: Path) -> Path:
    path = tmp_path / "allowlist.toml"
    path.write_text("accepted = []\n")
    return path


@pytest.fixture
def pip_audit_report(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What the (stubbed) pip-audit run reports: set its first item."""
    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(audit_cli, "run_pip_audit", lambda requirements, service: reports[0])
    yield reports


def test_the_committed_allow_list_gives_every_entry_an_id_a_package_and_a_reason() -> None:
    entries = load_allowlist(ALLOWLIST)
    assert all(entry.id and entry.package and len(entry.reason) >= 20 for entry in entries)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param('[[accepted]]\nid = "X-1"\npackage = "a"\n', "accepted entry 1 has no reason", id="no-reason"),
        pytest.param('[[accepted]]\nid = "X-1"\nreason = "r"\n', "accepted entry 1 has no package", id="no-package"),
        pytest.param('[[accepted]]\nid = " "\npackage = "a"\nreason = "r"\n', "entry 1 has no id", id="blank-id"),
        pytest.param('[[accepted]]\nid = "X-1"\npackage = "a"\nreason = "r"\n' * 2, "listed twice", id="twice"),
        pytest.param("accepted = [", "cannot read the allow-list", id="not-toml"),
    ],
)
def test_an_allow_list_entry_without_id_package_or_reason_is_refused(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "allowlist.toml"
    path.write_text(text)
    with pytest.raises(AuditError, match=error):
        load_allowlist(path)


def test_the_report_gives_findings_unaudited_packages_and_the_audited_count() -> None:
    findings, unaudited, audited = read_report(_report(VULNERABLE, CLEAN, SKIPPED))
    assert findings == [FINDING]
    assert unaudited == ["private-pkg: Dependency not found on PyPI and could not be audited"]
    assert audited == 2


@pytest.mark.parametrize(
    ("entry", "accepted"),
    [
        pytest.param(Accepted("PYSEC-2024-1", "jinja2", "not reachable"), True, id="by-id"),
        pytest.param(Accepted("GHSA-aaaa-bbbb-cccc", "jinja2", "not reachable"), True, id="by-alias"),
        pytest.param(Accepted("PYSEC-2024-1", "numpy", "not reachable"), False, id="other-package"),
        pytest.param(Accepted("PYSEC-2024-2", "jinja2", "not reachable"), False, id="other-id"),
    ],
)
def test_a_finding_is_accepted_only_by_its_id_or_alias_for_its_package(entry: Accepted, accepted: bool) -> None:
    refused, reasons, stale = judge([FINDING], [entry])
    assert (refused, stale) == (([], []) if accepted else ([FINDING], [entry]))
    assert reasons == ([f"{FINDING} -- accepted: not reachable"] if accepted else [])


def test_a_clean_report_passes_and_says_how_much_it_audited(
    allowlist: Path, pip_audit_report: list[dict[str, Any]]
) -> None:
    pip_audit_report.append(_report(CLEAN))
    assert audit_cli.audit(audit_cli.PROJECT_DIR, allowlist, "pypi") == [
        "audited 1 locked packages with pip-audit (pypi): 0 known vulnerabilities"
    ]


def test_an_accepted_finding_passes_with_its_reason(allowlist: Path, pip_audit_report: list[dict[str, Any]]) -> None:
    allowlist.write_text('[[accepted]]\nid = "CVE-2024-1"\npackage = "Jinja2"\nreason = "templates are ours"\n')
    pip_audit_report.append(_report(VULNERABLE, CLEAN))
    lines = audit_cli.audit(audit_cli.PROJECT_DIR, allowlist, "pypi")
    assert lines[1] == (
        "  accepted: jinja2 3.1.4: PYSEC-2024-1 (GHSA-aaaa-bbbb-cccc, CVE-2024-1), fixed in 3.1.5 -- accepted: "
        "templates are ours"
    )


def test_a_finding_not_in_the_allow_list_fails_the_audit(
    allowlist: Path, pip_audit_report: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    pip_audit_report.append(_report(VULNERABLE, CLEAN))
    assert audit_cli.main(["--allowlist", str(allowlist)]) == 1
    err = capsys.readouterr().err
    assert "  NOT ACCEPTED: jinja2 3.1.4: PYSEC-2024-1 (GHSA-aaaa-bbbb-cccc, CVE-2024-1), fixed in 3.1.5\n" in err
    assert err.endswith(
        f"1 findings not in {allowlist} and 0 packages not audited: upgrade, or accept each with an id and a reason\n"
    )


def test_a_package_that_could_not_be_audited_fails_the_audit(
    allowlist: Path, pip_audit_report: list[dict[str, Any]]
) -> None:
    pip_audit_report.append(_report(CLEAN, SKIPPED))
    with pytest.raises(AuditError, match="NOT AUDITED: private-pkg: Dependency not found"):
        audit_cli.audit(audit_cli.PROJECT_DIR, allowlist, "pypi")


def test_a_database_that_answers_for_no_package_fails_in_one_line(
    allowlist: Path, pip_audit_report: list[dict[str, Any]]
) -> None:
    pip_audit_report.append(_report(SKIPPED, {**SKIPPED, "name": "other"}))
    with pytest.raises(AuditError) as failure:
        audit_cli.audit(audit_cli.PROJECT_DIR, allowlist, "pypi")
    message = str(failure.value)
    assert message.startswith("the pypi vulnerability database answered for none of the 2 locked packages")
    assert "The audit needs network access" in message and "\n" not in message


def test_without_network_pip_audit_fails_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # bound, never listening: every connection to it is refused
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
        with pytest.raises(AuditError) as failure:
            run_pip_audit("idna==3.7\n", "pypi", timeout=5)
    message = str(failure.value)
    assert message.startswith("pip-audit could not query the pypi vulnerability database, so nothing was audited: ")
    assert "ProxyError" in message and "The audit needs network access" in message and "\n" not in message
