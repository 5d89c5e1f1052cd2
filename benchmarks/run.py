"""Benchmarks, run on demand (`make benchmark`); results go to docs/benchmarks.md.

- prediction latency: the seed's path (one-row DataFrame + Pipeline.predict) vs Pipeline.predict_proba on a
  numpy row vs our Classifier (folded linear path), and the service round trip in-process;
- image build: cold (no layer cache, empty wheelhouse cache) vs after a model-only change, and the image size;
- pipeline: wall time of each stage of one `make demo`-style run (from its summary);
- nights: a full nightly run and the next night's run on unchanged inputs (no change), on the local stand-ins.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DOCS = Path("docs/benchmarks.md")


def _median_us(fn: Callable[[], object], repeat: int = 7, number: int = 200) -> float:
    """Median over `repeat` runs of the mean time of `number` calls, in microseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(runs)


def prediction(bundle: Path) -> list[str]:
    """Latency of one prediction, three ways, side by side."""
    import pandas as pd
    from fastapi.testclient import TestClient

    from oncology_model.classifier import Classifier
    from oncology_model.datamodel import EXAMPLE_MALIGNANT, FEATURES, Tumor
    from oncology_model.service import ServiceSettings, create_app

    classifier = Classifier.from_bundle(bundle)
    tumor = Tumor(**EXAMPLE_MALIGNANT)
    row = np.array([tumor.as_row()], dtype=np.float64)

    def seed_path() -> object:  # the seed built a one-row DataFrame per request
        frame = pd.DataFrame([tumor.model_dump()], columns=list(FEATURES))
        return classifier.pipeline.predict(frame.to_numpy(dtype=np.float64))

    seed = _median_us(seed_path)
    proba = _median_us(lambda: classifier.pipeline.predict_proba(row))
    ours = _median_us(lambda: classifier.predict(tumor))
    batch = [tumor] * 1000
    ours_batch = _median_us(lambda: classifier.predict_many(batch), number=20) / 1000
    with TestClient(create_app(ServiceSettings(model_dir=bundle))) as client:
        service = _median_us(lambda: client.post("/v1/predictions", json=EXAMPLE_MALIGNANT), number=100)
    return [
        "## One prediction (median of 7 runs)",
        "",
        "| path | µs per prediction | vs seed |",
        "|---|---:|---:|",
        f"| seed: a one-row DataFrame per request + `Pipeline.predict` | {seed:.1f} | 1.0× |",
        f"| `Pipeline.predict_proba` on a (1, 9) numpy row | {proba:.1f} | {seed / proba:.1f}× |",
        f"| `Classifier.predict(Tumor)` (folded linear path) | {ours:.1f} | {seed / ours:.0f}× |",
        f"| `Classifier.predict_many`, 1,000 tumors, per tumor | {ours_batch:.2f} | {seed / ours_batch:.0f}× |",
        f"| `POST /v1/predictions` in-process (TestClient, incl. HTTP and validation) | {service:.0f} | – |",
    ]


def image_build(bundle: Path) -> list[str]:
    """Cold build (no layer cache, no wheel cache) vs a rebuild after a model-only change."""
    import docker

    from oncology_model.bundle import read_metadata, save_bundle
    from oncology_model.classifier import Classifier
    from oncology_pipeline.image import build_image, prepare_build_context

    client = docker.from_env(timeout=600)
    base = os.environ.get("ONCOLOGY_BASE_IMAGE", "oncology-base:bookworm")
    work = Path(tempfile.mkdtemp(prefix="bench-image-"))
    try:

        def build(bundle_dir: Path, tag: str, cache: Path, nocache: bool) -> tuple[float, float, int]:
            start = time.perf_counter()
            context = prepare_build_context(Path.cwd(), bundle_dir, work / f"ctx-{tag}", cache)
            prepared = time.perf_counter() - start
            args = {"BASE_IMAGE": base, "MODEL_VERSION": read_metadata(bundle_dir).model_version}
            info = build_image(client, context, f"oncology-bench:{tag}", args, lambda _: None, nocache=nocache)
            return prepared, time.perf_counter() - start, info.size

        cold_prepare, cold_total, size = build(bundle, "cold", work / "wheels-cold", nocache=True)
        changed = work / "model-changed"
        classifier = Classifier.from_bundle(bundle)
        save_bundle(classifier.pipeline, classifier.metadata.model_copy(update={"model_version": "bench-2"}), changed)
        warm_prepare, warm_total, _ = build(changed, "model-only", work / "wheels-cold", nocache=False)
    finally:
        for tag in ("cold", "model-only"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(f"oncology-bench:{tag}", force=True)
        shutil.rmtree(work, ignore_errors=True)
    return [
        "## Web-service image build (docker SDK, classic builder)",
        "",
        f"Base image `{base}`; image size **{size / 1e6:.1f} MB**.",
        "",
        "| build | context (wheelhouse, wheel, bundle) s | total s |",
        "|---|---:|---:|",
        f"| cold (empty wheel cache, no layer reused) | {cold_prepare:.1f} | {cold_total:.1f} |",
        f"| after a model-only change | {warm_prepare:.1f} | {warm_total:.1f} |",
    ]


def pipeline(summary: Path) -> list[str]:
    """Wall time by stage of one pipeline run, from its summary.json."""
    data = json.loads(summary.read_text())
    rows = [f"| {stage} | {seconds:.1f} |" for stage, seconds in data["seconds"].items()]
    return [
        "## Pipeline wall time by stage",
        "",
        f"From `{summary}` (version {data['version']}; `make demo` on embedded defaults).",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *rows,
        f"| **total of stages** | {sum(data['seconds'].values()):.1f} |",
    ]


def nights() -> list[str]:
    """Flow-run time of a full nightly run, then of the next run on the same inputs (it ends as no change)."""
    from prefect import get_client

    from demo.stack import local_stack

    work = Path(tempfile.mkdtemp(prefix="bench-nights-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    rows = []
    with local_stack(work) as stack:
        os.environ.update({**stack.env, "ONCOLOGY_WORK_DIR": str(work / "runs")})
        from flows.pipeline import train_test_publish_deploy

        for night in ("first night: full run", "second night: same inputs (no change)"):
            state = train_test_publish_deploy(return_state=True)
            if not state.is_completed() or state.state_details.flow_run_id is None:
                raise SystemExit(f"{night}: the run ended {state.type.value}: {state.message}")
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(state.state_details.flow_run_id)
            rows.append((night, run.total_run_time.total_seconds()))
    shutil.rmtree(work, ignore_errors=True)
    (full, full_s), (same, same_s) = rows
    return [
        "## Unattended nights: a full run, then a night with nothing new",
        "",
        "Two `train-test-publish-deploy` runs on the local stand-ins (moto, registry, Kubernetes stand-in with "
        "real pods); the second finds production built from the same inputs (fingerprint) and stops.",
        "",
        "| run | flow-run time s | vs full |",
        "|---|---:|---:|",
        f"| {full} | {full_s:.1f} | 100 % |",
        f"| {same} | {same_s:.1f} | {same_s / full_s:.1%} |",
    ]


def main() -> int:
    """Run the benchmarks asked for and write docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="model bundle (default: train one on the real data)")
    parser.add_argument("--image", action="store_true", help="also time the image builds (needs Docker)")
    parser.add_argument("--summary", type=Path, help="a pipeline run's summary.json (e.g. from make demo)")
    parser.add_argument("--nights", action="store_true", help="a full night vs a no-change night (needs Docker)")
    args = parser.parse_args()
    bundle = args.bundle
    if bundle is None:
        from tests.support.data import real_data
        from tests.support.models import train_bundle

        bundle = Path(tempfile.mkdtemp(prefix="bench-")) / "model"
        train_bundle(real_data(), bundle, version="20261125T000000Z-bench000")
    sections = [
        "# Benchmarks",
        "",
        f"Run with `make benchmark` on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        *prediction(bundle),
    ]
    if args.image:
        sections += ["", *image_build(bundle)]
    if args.summary:
        sections += ["", *pipeline(args.summary)]
    if args.nights:
        sections += ["", *nights()]
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text("\n".join(sections) + "\n")
    sys.stdout.write("\n".join(sections) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
