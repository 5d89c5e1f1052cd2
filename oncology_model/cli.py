"""Command line without Prefect: sample-data, train, serve."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oncology_model.errors import DataValidationError, OncologyModelError


@contextmanager
def _step(text: str) -> Iterator[None]:
    """Progress on stderr: what runs, then how long it took."""
    sys.stderr.write(f"{text} ... ")
    sys.stderr.flush()
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        sys.stderr.write("failed\n")
        raise
    sys.stderr.write(f"done ({time.perf_counter() - start:.2f} s)\n")


def format_evaluation(metadata: object) -> str:
    """A plain-text table of the hold-out metrics with their 95 % CIs."""
    from oncology_model.bundle import ModelMetadata

    assert isinstance(metadata, ModelMetadata)
    ev = metadata.evaluation
    lines = [
        f"model version  {metadata.model_version}",
        f"estimator      {metadata.config.estimator} (threshold {metadata.config.decision_threshold or 0:.4f}"
        + (
            f", chosen for cross-validated recall {metadata.threshold.cv_recall:.4f} on the training split)"
            if metadata.threshold and metadata.threshold.target_recall is not None
            else ")"
        ),
        f"data           {metadata.rows['kept']} of {metadata.rows['read']} rows kept, "
        f"sha256 {metadata.data_sha256[:12]}",
        f"hold-out       {ev.n_test} rows ({metadata.rows['train']} for training)",
        "",
        f"{'metric':<12} {'value':>8}   95 % CI",
    ]
    for name, est in ev.metrics.items():
        lines.append(f"{name:<12} {est.value:>8.4f}   [{est.ci_low:.4f}, {est.ci_high:.4f}]")
    for name, scores in ev.cv_scores.items():
        lines.append(f"cv {name:<9} {sum(scores) / len(scores):>8.4f}   folds {', '.join(f'{s:.3f}' for s in scores)}")
    if ev.repeated_cv is not None:
        cv = ev.repeated_cv
        lines += ["", f"{cv.repeats} x {cv.folds}-fold cross-validation of all {cv.rows} rows (the gate's floors)"]
        lines += [f"{name:<12} {e.value:>8.4f}   [{e.ci_low:.4f}, {e.ci_high:.4f}]" for name, e in cv.metrics.items()]
    if metadata.gate is not None:
        lines += ["", f"quality gate   {'PASSED' if metadata.gate.passed else 'FAILED'}"]
        lines += [f"  - {reason}" for reason in metadata.gate.reasons]
    return "\n".join(lines)


def _sample_data(args: argparse.Namespace) -> int:
    from oncology_model.sample_data import write_sample_data

    try:
        rows = write_sample_data(args.out)
    except OSError as exc:
        raise OncologyModelError(f"cannot write {args.out}: {exc.strerror}") from None
    sys.stdout.write(f"wrote {rows} rows to {args.out}\n")
    return 0


#: `train` options that set a field of the training configuration; unset, the configuration's default holds.
_TRAINING_OPTIONS = ("estimator", "seed", "test_size", "cv_folds", "decision_threshold", "target_recall")


def _train(args: argparse.Namespace) -> int:
    from oncology_model.data import load_csv

    with _step(f"reading {args.data}"):
        dataset = load_csv(args.data, args.max_invalid_share, args.max_missing_share)
    sys.stderr.write(dataset.report.summary() + "\n")
    # scikit-learn takes seconds to import: only once the data is good, so bad data fails at once
    from pydantic import ValidationError

    from oncology_model.candidate import make_candidate
    from oncology_model.config import TrainingConfig, first_error
    from oncology_model.versioning import new_version

    try:
        config = TrainingConfig(**{name: v for name in _TRAINING_OPTIONS if (v := getattr(args, name)) is not None})
    except ValidationError as exc:
        raise OncologyModelError(first_error(exc)) from None
    version = args.version or new_version(dataset.report.sha256)
    with _step(
        f"training {config.estimator} with {config.cv_folds}-fold cross-validation, evaluating on the "
        f"{config.test_size:.0%} hold-out and {'if it passes the gate, ' if args.strict else ''}saving the bundle to "
        f"{args.out}"
    ):
        candidate = make_candidate(dataset, config, version=version, directory=args.out, save_rejected=not args.strict)
    sys.stdout.write(format_evaluation(candidate.metadata) + "\n")
    if candidate.bundle_dir is None:
        reasons = "; ".join(candidate.decision.reasons)
        raise OncologyModelError(f"quality gate failed (--strict): {reasons}; nothing saved")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from oncology_model.classifier import Classifier

    Classifier.from_bundle(args.model)  # fail fast, with a one-line reason, before the server starts
    os.environ["ONCOLOGY_MODEL_DIR"] = str(args.model)
    uvicorn.run(
        "oncology_model.service:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oncology_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample-data", help="write the real Wisconsin data set (UCI layout) to a CSV file")
    sample.add_argument("out", type=Path, help="the CSV file to write")
    sample.set_defaults(run=_sample_data)

    train = commands.add_parser("train", help="train, evaluate and save a model bundle; prints the metrics")
    train.add_argument("--data", type=Path, required=True, help="training CSV in UCI layout")
    train.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    train.add_argument(
        "--estimator",
        choices=["logistic_regression", "random_forest", "gradient_boosting"],
        help="the model (default: logistic_regression)",
    )
    train.add_argument("--seed", type=int, help="seed of the split, the folds, the model and the bootstrap")
    train.add_argument("--test-size", type=float, help="share of the rows held out for the evaluation, in (0, 0.5)")
    train.add_argument("--cv-folds", type=int, help="cross-validation folds on the training split, 2 to 20")
    train.add_argument(
        "--decision-threshold",
        type=float,
        help="malignant when P(malignant) >= this, in (0, 1); default: chosen by cross-validation for --target-recall",
    )
    train.add_argument(
        "--target-recall", type=float, help="out-of-fold recall the chosen decision threshold reaches, in (0, 1]"
    )
    train.add_argument("--version", help="model version (default: UTC time and data fingerprint)")
    train.add_argument("--max-invalid-share", type=float, default=0.05, help="share of bad rows tolerated (dropped)")
    train.add_argument(
        "--max-missing-share",
        type=float,
        default=0.05,
        help="share of valid rows in which a feature (bare_nuclei) may be missing and imputed; more is an error",
    )
    train.add_argument("--strict", action="store_true", help="exit 1 and save nothing when the quality gate fails")
    train.set_defaults(run=_train)

    serve = commands.add_parser(
        "serve",
        help="serve a model bundle over HTTP (FastAPI, docs at /docs, metrics at /metrics); "
        "ONCOLOGY_ACCESS_LOG=true logs every request",
    )
    serve.add_argument("--model", type=Path, required=True, help="bundle directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes (default 1); each keeps its own /metrics, so on Kubernetes scale replicas instead",
    )
    serve.set_defaults(run=_serve)
    return parser


def _error_line(exc: Exception) -> str:
    """The error as one printable line: its message and, for bad data, the first problem (row and rule)."""
    lines = str(exc).splitlines()
    text = lines[0] if lines else type(exc).__name__
    if isinstance(exc, DataValidationError) and exc.problems:
        text += f"; first: {exc.problems[0]}"
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input exits non-zero with a one-line reason."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (OncologyModelError, ValueError, OSError, RuntimeError) as exc:
        sys.stderr.write(f"error: {_error_line(exc)}\n")
        return 1
    return code
