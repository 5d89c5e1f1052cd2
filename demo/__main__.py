"""`python -m demo` (`make demo`): the train-test-publish-deploy pipeline on embedded defaults."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

WORK_DIR = Path(".work/demo")
#: How long the demo keeps the deployed service up after the run (ONCOLOGY_DEMO_SERVE_SECONDS; Ctrl-C ends it).
SERVE_SECONDS = float(os.environ.get("ONCOLOGY_DEMO_SERVE_SECONDS", "60"))


def main() -> int:
    """Start the stand-ins, run the pipeline flow once, print what went where."""
    os.environ.setdefault("PREFECT_HOME", str(Path(".work/prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The runs land in `make server`'s database; its alert automations are for the nightly, not for the demo.
    os.environ.setdefault("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "false")
    from demo.console import quiet_console

    log_file = (WORK_DIR / "demo.log").resolve()
    quiet_console(log_file)
    from demo.stack import describe_service, local_stack

    out = sys.stdout.write
    out(f"Logs (Prefect, moto, Docker build): {log_file}\n")
    start = time.perf_counter()
    with local_stack(WORK_DIR.resolve()) as stack:
        os.environ.update(stack.env)
        from flows.pipeline import train_test_publish_deploy
        from oncology_model.versioning import new_version
        from oncology_pipeline.settings import load_settings
        from oncology_pipeline.summary import STAGES, PipelineSummary, table_cell

        out("Local stand-ins:\n" + "".join(f"  - {line}\n" for line in stack.stand_ins))
        if stack.publish_skipped:
            out(f"Publish and deploy will be skipped: {stack.publish_skipped}.\n")
        version = new_version()
        state = train_test_publish_deploy(
            version=version,
            publish_image=stack.publish_skipped is None,
            deploy_image=stack.publish_skipped is None,
            return_state=True,
        )
        summary_path = load_settings().run_dir(version) / "summary.json"
        if not summary_path.exists():  # it failed before any stage ran
            out(f"\nPipeline version {version}: {state.type.value}: {state.message}\n")
            return 1
        summary = PipelineSummary.model_validate(json.loads(summary_path.read_text()))
        if stack.publish_skipped:
            summary.skipped |= {"publish": stack.publish_skipped, "deploy": "no image: publish was skipped"}

        out(f"\nPipeline version {version}: {state.type.value} in {time.perf_counter() - start:.0f} s\n")
        for stage in STAGES:
            outcome = summary.stages.get(stage) or f"SKIPPED: {summary.skipped.get(stage, 'not reached')}"
            out(f"  {stage:<8} {table_cell(outcome)}  ({summary.seconds.get(stage, 0):.1f} s)\n")
        if summary.gate:
            out("Quality gate:\n" + "".join(f"  - {reason}\n" for reason in summary.gate))
        out("S3 objects written:\n" + "".join(f"  {uri}\n" for uri in summary.s3_uris))
        out(f"Image: {summary.image or '-'}\n")
        out(f"Rollout: {summary.rollout or '-'}\n")
        if api := os.environ.get("PREFECT_API_URL"):
            run_id = state.state_details.flow_run_id
            out(f"Prefect UI: {api.removesuffix('/api')}/runs/flow-run/{run_id}\n")
        else:
            out(f"Prefect runs are in {os.environ['PREFECT_HOME']}: `make server` shows them in the UI.\n")
        if stack.service_url and "deploy" in summary.stages and state.is_completed():
            _close_the_loop(stack.service_url, version)
        if stack.service_url and "deploy" in summary.stages and SERVE_SECONDS > 0:
            out("".join(f"{line}\n" for line in describe_service(stack.service_url)))
            out(
                f"It stays up for {SERVE_SECONDS:g} s (ONCOLOGY_DEMO_SERVE_SECONDS), then every container is removed.\n"
            )
            sys.stdout.flush()
            try:
                time.sleep(SERVE_SECONDS)
            except KeyboardInterrupt:
                out("Stopped.\n")
    return 0 if state.is_completed() else 1


def _close_the_loop(url: str, version: str) -> None:
    """Traffic with request ids, their confirmed diagnoses, the monitor flow: what the loop saw."""
    from demo.loop import send_traffic, wait_for_log, write_outcomes
    from flows.monitor import monitor
    from oncology_pipeline import layout
    from oncology_pipeline.settings import load_settings

    out = sys.stdout.write
    start = time.perf_counter()
    settings = load_settings()
    traffic = send_traffic(url, version)
    logged = wait_for_log(settings, set(traffic.diagnoses))
    outcomes = write_outcomes(settings, version, traffic.diagnoses)
    result = monitor()
    prediction_log = layout.uri(settings.prediction_log_bucket, f"{settings.prediction_log_prefix}/")
    out(
        f"\nThe loop ({time.perf_counter() - start:.0f} s): {len(traffic.diagnoses)} predictions served with request "
        f"ids, {logged} in the prediction log ({prediction_log})"
        f", their diagnoses confirmed in {outcomes}; the monitor joined {result.joined}:\n"
    )
    for perf in result.performance.versions:
        rates = "; ".join(
            f"{name} {rate.value:.3f} (95 % CI {rate.ci_low:.3f}-{rate.ci_high:.3f}, n={rate.trials})"
            if rate.value is not None
            else f"{name} n/a"
            for name, rate in (("recall", perf.sensitivity), ("specificity", perf.specificity))
        )
        verifying = f" ({perf.verification_records} deploy verification records set aside)"
        out(f"  {perf.model_version}: {perf.served} served{verifying}, {perf.confirmed} confirmed; {rates}\n")
    if result.labelled:
        out(f"New labelled cases for the next nightly: {result.labelled}\n")


if __name__ == "__main__":
    sys.exit(main())
