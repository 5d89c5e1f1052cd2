"""Audit every package in uv.lock (all extras and groups) with pip-audit; fail on a finding the allow-list does
not accept with a reason, and on packages that could not be audited.

Usage: python -m audit [--allowlist FILE] [--service pypi|osv]. It needs the vulnerability database of the
chosen service over the network; without it, it fails with one line that says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
ALLOWLIST = Path(__file__).with_name("allowlist.toml")
_NEEDS_NETWORK = (
    "The audit needs network access to that database (pip-audit's per-release vulnerability API, or OSV with "
    "--service osv); run it where that is reachable."
)
_LISTED = 20


class AuditError(Exception):
    """The audit could not run or its allow-list is unusable; the message says what to do."""


@dataclass(frozen=True)
class Accepted:
    """An accepted finding: its id (or an alias of it), the package, and why it does not affect us."""

    id: str
    package: str
    reason: str


@dataclass(frozen=True)
class Finding:
    """A known vulnerability in a locked package version."""

    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def __str__(self) -> str:
        fix = f"fixed in {', '.join(self.fix_versions)}" if self.fix_versions else "no fix released"
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.package} {self.version}: {self.id}{aliases}, {fix}"


def _name(package: str) -> str:
    """A package name normalised as PEP 503 does."""
    return re.sub(r"[-_.]+", "-", package).lower()


def load_allowlist(path: Path) -> list[Accepted]:
    """The accepted findings; AuditError when an entry lacks its id, package or reason, or repeats one."""
    try:
        entries = tomllib.loads(path.read_text()).get("accepted", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"cannot read the allow-list {path}: {exc}") from None
    accepted: list[Accepted] = []
    for n, entry in enumerate(entries, start=1):
        missing = [key for key in ("id", "package", "reason") if not str(entry.get(key, "")).strip()]
        if missing:
            raise AuditError(f"{path}: accepted entry {n} has no {', '.join(missing)}: each needs id, package, reason")
        accepted.append(Accepted(str(entry["id"]).strip(), _name(str(entry["package"])), str(entry["reason"]).strip()))
    ids = [(a.package, a.id) for a in accepted]
    if len(set(ids)) != len(ids):
        raise AuditError(f"{path}: an accepted finding is listed twice")
    return accepted


def locked_requirements(project_dir: Path) -> str:
    """Every locked package (all extras and dependency groups, not the project) as pinned requirements."""
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    command = [uv, "export", "--frozen", "--all-extras", "--all-groups", "--no-emit-project", "--no-hashes"]
    done = subprocess.run(
        [*command, "--no-header", "--format", "requirements-txt"],
        cwd=project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AuditError(f"uv export failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def run_pip_audit(requirements: str, service: str, timeout: int = 30) -> dict[str, Any]:
    """pip-audit's JSON report on the pinned requirements (no resolution); AuditError when it gives none,
    e.g. when the vulnerability database cannot be reached."""
    with tempfile.TemporaryDirectory(prefix="oncology-audit-") as tmp:
        requirements_file, report_file = Path(tmp) / "requirements.txt", Path(tmp) / "report.json"
        requirements_file.write_text(requirements)
        done = subprocess.run(
            [
                *(sys.executable, "-m", "pip_audit", "--requirement", str(requirements_file)),
                *("--no-deps", "--disable-pip", "--vulnerability-service", service, "--timeout", str(timeout)),
                *("--format", "json", "--output", str(report_file), "--progress-spinner", "off"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if not report_file.is_file() or not report_file.read_text().strip():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            cause = lines[-1] if lines else f"exit {done.returncode}"
            raise AuditError(
                f"pip-audit could not query the {service} vulnerability database, so nothing was audited: {cause}. "
                + _NEEDS_NETWORK
            )
        report: dict[str, Any] = json.loads(report_file.read_text())
    return report


def read_report(report: dict[str, Any]) -> tuple[list[Finding], list[str], int]:
    """The findings, the packages that could not be audited (with why), and how many packages were audited."""
    findings: list[Finding] = []
    unaudited: list[str] = []
    audited = 0
    for dependency in report.get("dependencies", []):
        if "skip_reason" in dependency:
            unaudited.append(f"{dependency['name']}: {dependency['skip_reason']}")
            continue
        audited += 1
        findings += [
            Finding(
                package=_name(dependency["name"]),
                version=dependency["version"],
                id=vuln["id"],
                aliases=tuple(vuln.get("aliases", [])),
                fix_versions=tuple(vuln.get("fix_versions", [])),
            )
            for vuln in dependency.get("vulns", [])
        ]
    return findings, unaudited, audited


def judge(findings: list[Finding], allowlist: list[Accepted]) -> tuple[list[Finding], list[str], list[Accepted]]:
    """The findings no entry accepts, the accepted ones with their reasons, and the entries that matched nothing."""
    refused: list[Finding] = []
    accepted: list[str] = []
    used: set[Accepted] = set()
    for finding in findings:
        ids = {finding.id, *finding.aliases}
        entry = next((a for a in allowlist if a.package == finding.package and a.id in ids), None)
        if entry is None:
            refused.append(finding)
        else:
            used.add(entry)
            accepted.append(f"{finding} -- accepted: {entry.reason}")
    return refused, accepted, [a for a in allowlist if a not in used]


def audit(project_dir: Path, allowlist_path: Path, service: str) -> list[str]:
    """Run the audit; returns the report lines. Raises AuditError when it must fail."""
    allowlist = load_allowlist(allowlist_path)
    requirements = locked_requirements(project_dir)
    findings, unaudited, audited = read_report(run_pip_audit(requirements, service))
    if unaudited and not audited:
        raise AuditError(
            f"the {service} vulnerability database answered for none of the {len(unaudited)} locked packages "
            f"(first: {unaudited[0]}), so nothing was audited: it cannot be reached from here. "
            f"{_NEEDS_NETWORK}"
        )
    refused, accepted, stale = judge(findings, allowlist)
    lines = [f"audited {audited} locked packages with pip-audit ({service}): {len(findings)} known vulnerabilities"]
    lines += [f"  accepted: {line}" for line in accepted]
    lines += [f"  no longer matched, remove from {allowlist_path.name}: {a.package} {a.id}" for a in stale]
    problems = [f"  NOT ACCEPTED: {finding}" for finding in refused]
    problems += [f"  NOT AUDITED: {line}" for line in unaudited[:_LISTED]]
    if len(unaudited) > _LISTED:
        problems.append(f"  ... and {len(unaudited) - _LISTED} more not audited")
    if problems:
        summary = f"{len(refused)} findings not in {allowlist_path} and {len(unaudited)} packages not audited"
        raise AuditError("\n".join([*lines, *problems, summary + ": upgrade, or accept each with an id and a reason"]))
    return lines


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every finding is accepted, 1 with the reasons otherwise."""
    parser = argparse.ArgumentParser(prog="python -m audit", description=__doc__.splitlines()[0])
    parser.add_argument("--allowlist", type=Path, default=ALLOWLIST, help="accepted findings (TOML)")
    parser.add_argument("--service", choices=["pypi", "osv"], default="pypi", help="pip-audit's vulnerability service")
    args = parser.parse_args(argv)
    try:
        lines = audit(PROJECT_DIR, args.allowlist, args.service)
    except AuditError as exc:
        sys.stderr.write(f"audit failed: {exc}\n")
        return 1
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
