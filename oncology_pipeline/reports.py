"""What the artifacts show: human-readable views of reports, metrics, gate decisions, coverage, images, deploys,
the cleanup and the monitor (markdown and tables)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from oncology_model.data import ValidationReport
from oncology_model.evaluation import Evaluation, GateDecision
from oncology_model.training import ThresholdChoice
from oncology_pipeline import housekeeping
from oncology_pipeline.driftwatch import DriftWatch
from oncology_pipeline.image import ImageInfo
from oncology_pipeline.outcomes import RULES, OutcomesReport, Rule
from oncology_pipeline.performance import Performance, Rate, VersionPerformance
from oncology_pipeline.reconcile import Decision, Observation
from oncology_pipeline.s3store import S3Object
from oncology_pipeline.smoketest import SmokeResult
from oncology_pipeline.summary import table_cell
from oncology_pipeline.testsuites import Suite, SuiteResult


def validation_markdown(report: ValidationReport, source: str) -> str:
    """The data validation report: the counts, each file read, sample ids found in several files, and the
    dropped rows (with their file when the data came from several)."""
    missing = ", ".join(f"{k} {v}" for k, v in report.missing.items() if v) or "none"
    lines = [
        f"# Data validation: {source}",
        "",
        f"- rows read: **{report.rows_read}**, kept: **{report.rows_kept}**, dropped: **{len(report.dropped)}**",
        f"- class balance: {', '.join(f'{k} {v}' for k, v in report.class_balance.items())}",
        f"- missing values kept for imputation: {missing}",
        f"- duplicate sample ids: {len(report.duplicate_sample_ids)}; rows identical to an earlier row: "
        f"{report.duplicate_rows}",
        f"- sha256: `{report.sha256}`",
    ]
    if report.files:
        lines += ["", "| file | rows read | rows kept | sha256 |", "|---|---:|---:|---|"]
        lines += [
            f"| {escape_markdown(f.source or '-')} | {f.rows_read} | {f.rows_kept} | `{f.sha256[:12]}` |"
            for f in report.files
        ]
    across = [k for k, files in report.sample_id_files.items() if len(set(files)) > 1]
    if across:
        lines += ["", "| sample id in several files | rows | classes |", "|---|---|---|"]
        lines += [
            f"| {k} | {escape_markdown(', '.join(report.sample_id_rows(k)))} | "
            f"{'conflicting' if k in report.conflicting_sample_ids else 'same'} |"
            for k in across[:50]
        ]
    if report.dropped:
        several = len({d.file for d in report.dropped}) > 1
        lines += ["", "| file | row | field | reason |" if several else "| row | field | reason |"]
        lines += ["|---|---:|---|---|" if several else "|---:|---|---|"]
        lines += [
            f"| {escape_markdown(d.file) + ' | ' if several else ''}{d.row} | {d.field} | {d.reason} |"
            for d in report.dropped[:50]
        ]
    return "\n".join(lines)


def class_balance_rows(report: ValidationReport) -> list[dict[str, Any]]:
    """One row per class of the kept rows: the class and how many rows have it."""
    return [{"class": k, "rows": v} for k, v in report.class_balance.items()]


def metrics_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """One row per hold-out metric with its 95 % confidence interval."""
    return [
        {"metric": name, "value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high}
        for name, est in evaluation.metrics.items()
    ]


def gate_markdown(
    decision: GateDecision, version: str, threshold: ThresholdChoice | None = None, evaluation: Evaluation | None = None
) -> str:
    """The quality gate's decision with its reasons, and how the decision threshold was chosen."""
    verdict = (
        "PASSED: stored as a candidate (production only after a verified deploy)"
        if decision.passed
        else "FAILED: not stored"
    )
    champion = decision.champion_version or "none (first model)"
    lines = [f"# Quality gate for {version}: {verdict}", "", f"Champion (the serving model): {champion}", ""]
    lines += [f"- {reason}" for reason in decision.reasons]
    if evaluation is not None and evaluation.repeated_cv is not None:
        cv = evaluation.repeated_cv
        lines += [
            "",
            f"The floors are judged on the mean of {cv.repeats} x {cv.folds}-fold stratified cross-validation of all "
            f"{cv.rows} rows (the whole training procedure, threshold choice included, in each fold), so the "
            "verdict does not flip with one hold-out split; the champion comparison stays paired on the hold-out. "
            f"Interval: {cv.interval}.",
            "",
            "| metric | cross-validation mean | 95 % interval | hold-out |",
            "|---|---:|---:|---:|",
            *(
                f"| {name} | {e.value:.4f} | [{e.ci_low:.4f}, {e.ci_high:.4f}] | {evaluation.value(name):.4f} |"
                for name, e in cv.metrics.items()
            ),
        ]
    if threshold is not None and evaluation is not None:
        target = f"target recall {threshold.target_recall}" if threshold.target_recall is not None else "fixed"
        lines += [
            "",
            f"Decision threshold {threshold.threshold:.4f} ({target}), chosen on the training split's out-of-fold "
            "probabilities, never on the hold-out:",
            "",
            "| | cross-validation (training split) | hold-out |",
            "|---|---:|---:|",
            f"| recall | {threshold.cv_recall:.4f} | {evaluation.value('recall'):.4f} |",
            f"| specificity | {threshold.cv_specificity:.4f} | {evaluation.value('specificity'):.4f} |",
        ]
    return "\n".join(lines)


def escape_markdown(text: str) -> str:
    """Text that the UI's markdown shows as it is (`__init__.py` stays `__init__.py`, not a bold `init.py`)."""
    return "".join(f"\\{c}" if c in "\\`*_[]<>|" else c for c in text)


def coverage_rows(coverage: dict[str, Any]) -> list[dict[str, Any]]:
    """Coverage per module from a coverage.py JSON report."""
    rows = [
        {
            "module": escape_markdown(path),
            "statements": data["summary"]["num_statements"],
            "missing": data["summary"]["missing_lines"],
            "covered_percent": round(data["summary"]["percent_covered"], 1),
        }
        for path, data in sorted(coverage.get("files", {}).items())
    ]
    total = coverage.get("totals", {})
    if total:
        rows.append(
            {
                "module": "TOTAL",
                "statements": total["num_statements"],
                "missing": total["missing_lines"],
                "covered_percent": round(total["percent_covered"], 1),
            }
        )
    return rows


def suites_markdown(suites: list[Suite], results: list[SuiteResult]) -> str:
    """What the test stage ran and why, and how each suite did."""
    lines = [
        "| suite | ran | why | tests | failed | seconds | coverage |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for suite, result in zip(suites, results, strict=True):
        lines.append(
            f"| {suite.name} | {escape_markdown(suite.arguments)} | {escape_markdown(suite.why)} | {result.tests} "
            f"| {result.failures + result.errors} | {result.seconds:.1f} | {result.percent_covered:.1f} % |"
        )
    lines += [
        "",
        "Property, fuzz and file-determinism tests are not run here: they test code, which the run's fingerprint "
        "covers, and `make test` runs them on every change of it.",
    ]
    return "\n".join(lines)


def objects_rows(objects: list[S3Object]) -> list[dict[str, str | int]]:
    """The rows of a written-objects table: `s3://` URI, size, ETag, version id."""
    return [
        {"object": escape_markdown(o.uri), "bytes": o.size, "etag": o.etag.strip('"'), "version": o.version_id or "-"}
        for o in objects
    ]


def cleanup_rows(
    decisions: Iterable[housekeeping.Decision], deleted: Collection[str], dry_run: bool
) -> list[dict[str, str]]:
    """The cleanup table: each version, what happened to its model files, and why."""
    rows = []
    for d in decisions:
        if not d.delete:
            action = "keep"
        elif dry_run:
            action = "would delete"
        elif d.version in deleted:
            action = "deleted"
        else:
            action = "kept: production changed meanwhile"
        rows.append({"version": d.version, "model files": action, "reason": d.reason})
    return rows


def cleanup_description(where: str, dry_run: bool) -> str:
    """The cleanup table's title; `where` is the model versions' `s3://` folder."""
    title = "Model cleanup, dry run: nothing deleted" if dry_run else "Model cleanup"
    return f"{title} ({where}/<version>/)"


def history_row(metadata: dict[str, Any]) -> dict[str, Any]:
    """One row of trainer/metrics/history.csv: version, data, each metric with its CI, the gate decision."""
    row: dict[str, Any] = {
        "model_version": metadata["model_version"],
        "created_at": metadata["created_at"],
        "estimator": metadata["config"]["estimator"],
        "data_sha256": metadata["data_sha256"],
        "rows_kept": metadata["rows"]["kept"],
    }
    for name, est in metadata["evaluation"]["metrics"].items():
        row |= {name: est["value"], f"{name}_ci_low": est["ci_low"], f"{name}_ci_high": est["ci_high"]}
    gate = metadata.get("gate") or {}
    row |= {"gate_passed": gate.get("passed"), "champion_version": gate.get("champion_version") or ""}
    return row


def image_markdown(pinned: str, info: ImageInfo, smoke: SmokeResult) -> str:
    """The published image: reference by digest, size, labels and the smoke test's answer."""
    lines = [
        "# Published image",
        "",
        f"- image: `{pinned}`",
        f"- built as `{info.tag}` (`{info.id}`), {info.size / 1e6:.1f} MB",
        f"- smoke test: ready in {smoke.ready_seconds:.1f} s, one prediction in {smoke.latency_ms:.1f} ms: "
        f"`{smoke.response}`",
        "",
        "| label | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in sorted(info.labels.items())]
    return "\n".join(lines)


def deploy_markdown(version: str, image: str, cluster: dict[str, Any], rollout: dict[str, Any], verified: str) -> str:
    """The deploy stage for a person: each Deployment's old and new image, the rollout, the verification and,
    when it failed, what was put back."""
    outcome = rollout.get("outcome", "-")
    headline = f"production is now {version}" if outcome == "rolled out" else f"{version} rolled back"
    lines = [f"# Deploy {version}: {headline}", "", f"Image: `{image}`", ""]
    lines += ["| Deployment | namespace | before | after |", "|---|---|---|---|"]
    for change in cluster.get("deployments", []):
        before, after = (_digest(change.get(k)) for k in ("previous_image", "new_image"))
        lines.append(f"| {change['name']} | {cluster.get('namespace', '-')} | `{before}` | `{after}` |")
    lines += ["", f"Rollout: {rollout.get('detail') or rollout.get('reason') or outcome}"]
    lines += ["", f"Verification: {verified}"]
    rollback = "none needed" if outcome == "rolled out" else f"rolled back: {rollout.get('restored') or '-'}"
    lines += ["", f"Rollback: {rollback}"]
    return "\n".join(lines)


def reconcile_markdown(observation: Observation, decision: Decision, namespace: str, selector: str) -> str:
    """What a run found before acting: production's records, each Deployment, the Service's answer, every drift and
    what the run does about it."""
    production = observation.production
    drifts = observation.drifts
    if production is None:
        headline = "no production yet"
    else:
        headline = f"{len(drifts)} drift(s) from production {production.version}" if drifts else "in sync"
    lines = [f"# Reconcile: {headline}", "", f"Action: {escape_markdown(decision.text)}", ""]
    if production is not None:
        lines += [
            f"Production (the pointer): **{production.version}**, image `{production.image or '-'}`, "
            f"record `{production.release}`",
            "",
        ]
    if drifts:
        lines += ["| where | found | production's records say |", "|---|---|---|"]
        lines += [
            f"| {escape_markdown(d.where)} | {table_cell(_short(d.found))} | {table_cell(_short(d.expected))} |"
            for d in drifts
        ]
        lines.append("")
    lines += [f"Deployments matching `{selector}` in namespace `{namespace}`:", ""]
    lines += ["| Deployment | image | model-version annotation | replicas |", "|---|---|---|---:|"]
    lines += [
        f"| {r.deployment} | `{_digest(r.image)}` | {r.version or '-'} | {r.replicas} |"
        for r in observation.deployments
    ] or ["| (none) | - | - | - |"]
    served = observation.served
    if served is not None:
        answer = ", ".join(served.versions) or f"no answer: {table_cell(served.error or '-')}"
        lines += ["", f"Service `{served.service}` serves: {answer}"]
    return "\n".join(lines)


def _short(value: str) -> str:
    """A pinned image as `_digest` shows it (the full references are on the Production line and in the alert)."""
    return _digest(value) if "@sha256:" in value else value


def _digest(image: str | None) -> str:
    """`…@sha256:<first 12 hex>` of a pinned image (the repository is on the Image line), else the reference."""
    if not image:
        return "-"
    repository, _, digest = image.partition("@")
    return f"{repository.rsplit('/', 1)[-1]}@{digest[:19]}" if digest else image


def outcomes_markdown(report: OutcomesReport) -> str:
    """The confirmed diagnoses read: per file, problems per rule, and the first problems by file and row."""
    lines = [
        f"# Confirmed outcomes: {report.cases_used} cases used",
        "",
        f"- files: **{len(report.files)}** ({sum(1 for f in report.files if f.refused)} refused), "
        f"rows read: **{report.rows_read}**",
        f"- conflicting cases (none of their rows used): {report.conflicting_cases}",
        "",
        "| file | rows read | rows used | refused |",
        "|---|---:|---:|---|",
    ]
    lines += [
        f"| {escape_markdown(f.file)} | {f.rows_read} | {f.rows_used} | {escape_markdown(f.refused or '-')} |"
        for f in report.files
    ]
    counted = [(Rule(rule), n) for rule, n in report.counts.items() if n]
    if counted:
        lines += ["", "| rule | meaning | count |", "|---|---|---:|"]
        lines += [f"| {escape_markdown(rule)} | {escape_markdown(RULES[rule])} | {n} |" for rule, n in counted]
    if report.problems:
        total = sum(report.counts.values())
        shown = f" (the first {len(report.problems)} of {total})" if total > len(report.problems) else ""
        lines += ["", f"Problems{shown}:", "", "| file | row | rule | detail |", "|---|---:|---|---|"]
        lines += [
            f"| {escape_markdown(p.file)} | {p.row} | {escape_markdown(p.rule)} | {escape_markdown(p.detail)} |"
            for p in report.problems
        ]
    return "\n".join(lines)


def _rate(rate: Rate) -> str:
    """`0.950 [0.839, 0.991] (19/20)`, or `n/a (0/0)` for a rate of no cases."""
    if rate.value is None or rate.ci_low is None or rate.ci_high is None:
        return f"n/a ({rate.successes}/{rate.trials})"
    return f"{rate.value:.3f} [{rate.ci_low:.3f}, {rate.ci_high:.3f}] ({rate.successes}/{rate.trials})"


def _hours(hours: float | None) -> str:
    return "n/a" if hours is None else f"{hours:.1f}"


def _version_table(version: VersionPerformance) -> list[str]:
    alarm = ": RECALL ALARM" if version.recall_alarm else ""
    return [
        f"## {version.model_version}{alarm}",
        "",
        "| | value [95 % interval] (k/n) |",
        "|---|---|",
        f"| served | {version.served} |",
        f"| deploy verification records (set aside) | {version.verification_records} |",
        f"| confirmed | {version.confirmed} |",
        f"| share confirmed | {version.confirmed_share:.1%} |",
        f"| sensitivity (realised recall) | {_rate(version.sensitivity)} |",
        f"| specificity | {_rate(version.specificity)} |",
        f"| precision | {_rate(version.precision)} |",
        f"| hours to outcome, median / p90 | {_hours(version.hours_to_outcome_median)} / "
        f"{_hours(version.hours_to_outcome_p90)} |",
        f"| tp / fn / tn / fp | {version.tp} / {version.fn} / {version.tn} / {version.fp} |",
    ]


def performance_markdown(performance: Performance) -> str:
    """Realised performance per model version on the confirmed cases, with the interval method and the alarm rule."""
    window = f"{performance.window_start.isoformat()} to {performance.window_end.isoformat()}"
    alarms = ", ".join(performance.alarms) or "none"
    lines = [
        "# Realised performance on confirmed diagnoses",
        "",
        f"- window: {window}; generated {performance.generated_at.isoformat()}",
        f"- prediction log: {performance.records} records, {performance.invalid_records} invalid, "
        f"{performance.repeated_records} repeated case ids, {performance.ambiguous_cases} ambiguous cases",
        f"- outcomes joined: **{performance.outcomes_joined}**, not joined: {performance.outcomes_not_joined}",
        f"- recall alarms: **{escape_markdown(alarms)}**",
        "",
        f"Malignant is the positive class. Intervals: {escape_markdown(performance.interval)}. Alarm rule: a version "
        f"alarms when it has at least {performance.min_malignant} confirmed malignant cases and the upper bound of "
        f"its realised recall's interval is below {performance.min_recall} (a one-sided test at 2.5 % of "
        f"'true recall >= {performance.min_recall}').",
    ]
    if not performance.versions:
        lines += ["", "No predictions in the window."]
    for version in performance.versions:
        lines += ["", *_version_table(version)]
    return "\n".join(lines)


def drift_markdown(watch: DriftWatch, charts: Mapping[str, str]) -> str:
    """The drift watch: per model version the verdict, one row per feature (statistic, adjusted p, PSI and its
    limit), the prediction share, the rule, a link to its chart (`charts`: version -> URL), and what retraining
    waits for."""
    window = f"{watch.window_start.isoformat()} to {watch.window_end.isoformat()}"
    added = f" ({escape_markdown(watch.labelled_file)})" if watch.labelled_file else ""
    lines = [
        "# Input drift against the training data",
        "",
        f"- window: {window}; generated {watch.generated_at.isoformat()}",
        f"- new confirmed cases this run added to the training data: **{watch.new_confirmed_cases}**{added}",
        "",
        "Drift alone never retrains: the nightly retrains when new confirmed cases arrive (a fingerprint over the "
        "labelled files), so a drifting input waits for the diagnoses that show what the new inputs mean.",
    ]
    if not watch.versions:
        lines += ["", "No predictions in the window."]
    for version in watch.versions:
        lines += ["", f"## {escape_markdown(version.model_version)}: {version.verdict} ({version.rows} rows)"]
        report = version.report
        if report is None:
            continue
        lines += ["", escape_markdown(report.rule)]
        if report.refused_requests is not None:  # a judged version answered rows > 0 requests of the window
            refused, requests = report.refused_requests, report.rows + report.refused_requests
            lines += [
                "",
                f"Requests refused as invalid (HTTP 400/422): **{refused}** of {requests} ({refused / requests:.1%})",
            ]
        if version.model_version in charts:
            lines += ["", f"[Reference vs window, per feature (chart)]({charts[version.model_version]})"]
        lines += [
            "",
            "| feature | chi-square (dof) | adjusted p | PSI | PSI limit | missing ref / window | verdict |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in report.features:
            missing = f"{row.reference_missing_share:.1%} / " + (
                "-" if row.window_missing_share is None else f"{row.window_missing_share:.1%}"
            )
            if row.test is None:
                lines.append(f"| {escape_markdown(row.feature)} | - | - | - | - | {missing} | not judged |")
                continue
            t = row.test
            lines.append(
                f"| {escape_markdown(row.feature)} | {t.statistic:.2f} ({t.dof}) | {t.adjusted_p:.3g} | {t.psi:.4f} | "
                f"{t.psi_limit:.4f} | {missing} | {'**drift**' if t.drifts else 'no drift'} |"
            )
        share = report.prediction
        current = "-" if share.window_share is None else f"{share.window_share:.1%}"
        name = f"predicted malignant share ({share.reference_share:.1%} → {current})"
        if share.test is None:
            lines.append(f"| {name} | - | - | - | - | - | not judged |")
        else:
            test = share.test
            verdict = "**drift**" if test.drifts else "no drift"
            lines.append(
                f"| {name} | {test.statistic:.2f} ({test.dof}) | {test.adjusted_p:.3g} | - | - | - | {verdict} |"
            )
    return "\n".join(lines)
