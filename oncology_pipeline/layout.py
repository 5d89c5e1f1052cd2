"""Where everything lives in S3: every key the pipeline reads or writes, and its `s3://` URI, in one place.

s3://<model-bucket>/<model-prefix>/<version>/model.skops, metadata.json   every approved version (candidates)
s3://<model-bucket>/<model-prefix>/production.json                       the verified serving version
s3://<model-bucket>/releases/<version>.json                              one release record per version
s3://<model-bucket>/releases/fingerprints/<sha256>.json                  the latest version of those inputs
s3://<metrics-bucket>/trainer/metrics/metrics-<version>.json             metrics, CIs, gate decision
s3://<metrics-bucket>/trainer/metrics/history.csv                        one row per version (QuickSight)
s3://<metrics-bucket>/trainer/metrics/quicksight-manifest.json
s3://<metrics-bucket>/trainer/unittest-coverage/unittest-coverage-<version>.json
s3://<metrics-bucket>/trainer/test-coverage/test-coverage-<version>.json
s3://<metrics-bucket>/monitoring/<run>/performance.json, monitoring/latest/performance.json   the monitor flow
s3://<log-bucket>/<log-prefix>/date=YYYY-MM-DD/hour=HH/<pod>-<start>-<seq>.jsonl.gz   the service's prediction log
s3://<data-bucket>/<outcomes-prefix>/*.csv                                confirmed diagnoses (request_id, ...)
s3://<data-bucket>/<labelled-prefix>/labelled-<run>.csv                   joined cases the nightly trains on
"""

from __future__ import annotations

POINTER_FILE = "production.json"
RELEASES = "releases"
FINGERPRINTS = f"{RELEASES}/fingerprints"
TRAINER = "trainer"  # the pipeline's reports in the metrics bucket
METRICS = f"{TRAINER}/metrics"
HISTORY = f"{METRICS}/history.csv"
QUICKSIGHT_MANIFEST = f"{METRICS}/quicksight-manifest.json"


def uri(bucket: str, key: str) -> str:
    """`s3://<bucket>/<key>`; a key that ends in `/` names a folder."""
    return f"s3://{bucket}/{key}"


def version_prefix(model_prefix: str, version: str) -> str:
    """`<model-prefix>/<version>`: a model version's bundle files."""
    return f"{model_prefix}/{version}"


def bundle_key(model_prefix: str, version: str, name: str) -> str:
    """`<model-prefix>/<version>/<name>`: one file of a model version's bundle."""
    return f"{version_prefix(model_prefix, version)}/{name}"


def pointer_key(model_prefix: str) -> str:
    """`<model-prefix>/production.json`."""
    return f"{model_prefix}/{POINTER_FILE}"


def release_key(version: str) -> str:
    """`releases/<version>.json`."""
    return f"{RELEASES}/{version}.json"


def fingerprint_key(digest: str) -> str:
    """`releases/fingerprints/<digest>.json`."""
    return f"{FINGERPRINTS}/{digest}.json"


def metrics_key(version: str) -> str:
    """`trainer/metrics/metrics-<version>.json`."""
    return f"{METRICS}/metrics-{version}.json"


def unit_coverage_key(version: str) -> str:
    """`trainer/unittest-coverage/unittest-coverage-<version>.json`."""
    return f"{TRAINER}/unittest-coverage/unittest-coverage-{version}.json"


def model_coverage_key(version: str) -> str:
    """`trainer/test-coverage/test-coverage-<version>.json`."""
    return f"{TRAINER}/test-coverage/test-coverage-{version}.json"


MONITORING = "monitoring"


def monitoring_key(run: str, name: str) -> str:
    """`monitoring/<run>/<name>`; `run` is a monitor run's stamp or `latest`."""
    return f"{MONITORING}/{run}/{name}"


def outcomes_key(outcomes_prefix: str, name: str) -> str:
    """`<outcomes-prefix>/<name>.csv`: one file of confirmed diagnoses."""
    return f"{outcomes_prefix}/{name}.csv"


def labelled_key(labelled_prefix: str, run: str) -> str:
    """`<labelled-prefix>/labelled-<run>.csv`: the cases one monitor run joined."""
    return f"{labelled_prefix}/labelled-{run}.csv"
