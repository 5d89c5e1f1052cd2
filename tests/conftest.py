"""Session-wide servers, a trained model bundle, the serving image built once, and per-test isolation.

Heavy modules (Prefect, Docker, moto, the image build) are imported inside the fixtures that need them: the
nightly's test stage runs suites under tests/ in fresh processes, which should not pay for what they never use."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.nodeid import NodeId

from tests.support.paths import PROJECT_DIR
from tests.support.shared import JSON, made_this_run, once_per_run, run_root

if TYPE_CHECKING:
    from oncology_model.bundle import ModelMetadata
    from oncology_model.classifier import Classifier
    from tests.support.docker_env import BuiltImage
    from tests.support.fault_proxy import FaultProxy
    from tests.support.stacks import Stack
    from tests.support.workloads import Workloads

BUILT_IMAGE = "built-image"
HARNESS_FLAG = "TESTS_PREFECT_HARNESS"


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One throw-away Prefect server (own PREFECT_HOME and database) for every flow and fault test: one, because
    Prefect's event-loop threads keep the API URL they started with."""
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv(HARNESS_FLAG, "1")  # the alert tests refuse to share the process with it (tests/alerts)
        with prefect_test_harness(server_startup_timeout=60):
            yield


@pytest.fixture(scope="session")
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """The fault-injecting proxy in front of the session's moto server."""
    from tests.support.fault_proxy import fault_proxy

    with fault_proxy(moto_endpoint) as running:
        yield running


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session; tests use their own buckets/repositories."""
    from tests.support.moto_server import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def real_csv() -> bytes:
    """The real data set as UCI-layout CSV bytes."""
    from tests.support.data import real_data

    return real_data()


@pytest.fixture(scope="session")
def model_bundle_dir(tmp_path_factory: pytest.TempPathFactory, real_csv: bytes) -> Path:
    """A bundle trained on the real data (logistic regression, default config), one per test run; do not modify it."""
    from tests.support.models import train_bundle

    def train(folder: Path) -> JSON:
        train_bundle(real_csv, folder / "model", version="20261125T000000Z-7e570001")
        return {"path": str(folder / "model")}

    return Path(once_per_run(tmp_path_factory, "bundle", train)["path"])


@pytest.fixture(scope="session")
def session_classifier(model_bundle_dir: Path) -> Classifier:
    """The session bundle, loaded: the reference model the code's tests use (tests/model judges the model under
    test instead); do not modify it."""
    from oncology_model.classifier import Classifier

    return Classifier.from_bundle(model_bundle_dir)


@pytest.fixture(scope="session")
def model_metadata(session_classifier: Classifier) -> ModelMetadata:
    """The session bundle's metadata."""
    return session_classifier.metadata


@pytest.fixture
def stack(proxy: FaultProxy, real_csv: bytes, tmp_path: Path) -> Iterator[Stack]:
    """A test's own buckets behind the fault proxy, for the flow and fault tests; the proxy's faults are cleared
    afterwards."""
    from tests.support.stacks import fresh_stack

    with fresh_stack(proxy, real_csv, tmp_path / "work") as made:
        yield made


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client of the real Docker engine (fails, never skips, when there is none)."""
    from tests.support import docker_env

    return docker_env.docker_client()


@pytest.fixture(scope="session")
def registry_address() -> str:
    """The authenticated local registry (htpasswd user AWS, moto's ECR password)."""
    from tests.support import docker_env

    return docker_env.registry_address()


@pytest.fixture(scope="session")
def build_context(model_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build context for the session's model bundle."""
    from oncology_pipeline.buildcontext import prepare_build_context

    return prepare_build_context(PROJECT_DIR, model_bundle_dir, tmp_path_factory.mktemp("image") / "context")


@pytest.fixture(scope="session")
def built_image(docker_client: Any, build_context: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The serving image on oncology-base:bookworm, built once per test run with a secret index URL in its build
    args; removed, with its builder stage, when the run ends (`pytest_sessionfinish`)."""
    from oncology_model.classifier import Classifier
    from oncology_pipeline.image import build_image
    from tests.support import docker_env

    def build(folder: Path) -> JSON:
        docker_env.require_image(docker_client, docker_env.BASE_IMAGE)
        secret = f"s3cr3t-{secrets.token_hex(16)}"
        log: list[str] = []
        info = build_image(
            docker_client,
            build_context,
            f"oncology-model-test:{uuid.uuid4().hex[:12]}",
            {
                "BASE_IMAGE": docker_env.BASE_IMAGE,
                "VERSION": "0.1.0",
                "MODEL_VERSION": Classifier.from_bundle(build_context / "model").version,
                "REVISION": "0123456789abcdef0123456789abcdef01234567",
                "PIP_EXTRA_INDEX_URL": f"https://ci-bot:{secret}@nexus.example.invalid/repository/pypi/simple",
            },
            log.append,
        )
        return {"info": dataclasses.asdict(info), "secret": secret, "build_log": log}

    made = once_per_run(tmp_path_factory, BUILT_IMAGE, build)
    from oncology_pipeline.image import ImageInfo
    from tests.support.docker_env import BuiltImage

    return BuiltImage(info=ImageInfo(**made["info"]), secret=made["secret"], build_log=made["build_log"])


def _remove_built_image(root: Path) -> None:
    """The session's serving image and its builder stage, which keeps the build args in its (never pushed) history."""
    made = made_this_run(root, BUILT_IMAGE)
    if made is None:
        return
    import docker

    from tests.support import docker_env

    client = docker_env.docker_client()
    for image in [*docker_env.builder_images_with(client, made["secret"]), made["info"]["id"]]:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image, force=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the process that started the run (not in an xdist worker), after every test: remove what it built once."""
    if not hasattr(session.config, "workerinput"):
        _remove_built_image(run_root(session.config._tmp_path_factory))  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test reach a real AWS account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def workloads(
    docker_client: Any,
    registry_address: str,
    built_image: BuiltImage,
    model_metadata: ModelMetadata,
    real_csv: bytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> Workloads:
    """The serving image and an earlier model version's image, plus one that crashes, in the local registry."""
    from tests.support.models import train_bundle
    from tests.support.workloads import Workloads, push_workloads

    def push(folder: Path) -> JSON:
        previous_bundle = folder / "previous"
        train_bundle(real_csv, previous_bundle, version="20261124T000000Z-9e7a0001")
        pushed = push_workloads(
            docker_client, registry_address, built_image.info.id, model_metadata.model_version, previous_bundle, folder
        )
        return {**dataclasses.asdict(pushed), "previous_bundle": str(previous_bundle)}

    made = once_per_run(tmp_path_factory, "workloads", push)
    return Workloads(**{**made, "previous_bundle": Path(made["previous_bundle"])})


#: What a test needs, by the fixtures it uses: `docker` (the engine, the registry, the serving image),
#: `cluster` (the Kubernetes stand-in with real pods: they run the `workloads` images; a stand-in with scripted
#: containers needs neither), `slow` (a Prefect server, whole flows). `pytest -m "not docker and not
#: cluster and not slow"` is the quick suite; `make test` runs them all and fails when a component is missing.
MARKS_BY_FIXTURE = {
    "docker": {"docker_client", "registry_address", "built_image", "build_context", "workloads"},
    "cluster": {"workloads"},
    "slow": {"prefect_server", "alert_server", "stack"},
}


#: Tests that share a server they start once per package or module run in one xdist worker (`--dist loadgroup`):
#: the alerts' own Prefect server; the real pods of test_kube_pods; the registry fault cases, whose checks count
#: the requests one push makes (one at a time). The largest groups are handed out first.
GROUPS_BY_FIXTURE = {"alerts": {"alert_server"}, "kube-pods": {"serving_pods"}, "registry-faults": {"registry_faults"}}


def _weight(item: pytest.Item) -> int:
    """How early a test should start: the alert tests (before any Prefect test server starts in the process), whole
    flows with images, other flows, Docker, then the rest."""
    if "alert_server" in getattr(item, "fixturenames", ()):
        return 0
    marks = {mark.name for mark in item.iter_markers()}
    return 1 if {"slow", "docker"} <= marks else 2 if "slow" in marks else 3 if marks & {"docker", "cluster"} else 4


def _join_group(item: pytest.Item, group: str) -> None:
    """What `--dist loadgroup` keys on: the group after an `@` in the node id. pytest-xdist 3.8 writes it to
    `item._nodeid`, which pytest 9 no longer reads (node ids are `item._id`), so its groups are silently ignored."""
    if "@" not in item.nodeid:
        item._id = NodeId.parse(f"{item.nodeid}@{group}")


def _name_apart(items: list[pytest.Item]) -> None:
    """Give tests that share a node id their own: schemathesis' `schema.parametrize` names its tests by operation
    (`test_x[GET /healthz]`) but leaves all of them one node id, and xdist, which schedules by node id, would run
    one of the five and drop the others without a word."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1 and not item.nodeid.endswith(f"::{item.name}"):
            item._id = NodeId.parse(f"{item.nodeid.rsplit('::', 1)[0]}::{item.name}")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by the fixtures it uses (see MARKS_BY_FIXTURE and GROUPS_BY_FIXTURE), and put the longest
    kinds first (a stable sort: a module's tests keep their order), so that no worker starts a long test last."""
    _name_apart(items)
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for mark, fixtures in MARKS_BY_FIXTURE.items():
            if used & fixtures:
                item.add_marker(getattr(pytest.mark, mark))
        for group, fixtures in GROUPS_BY_FIXTURE.items():
            if used & fixtures:
                item.add_marker(pytest.mark.xdist_group(group))
        marked = item.get_closest_marker("xdist_group")
        if marked is not None and getattr(config.option, "loadgroup", False):  # set in xdist workers only
            _join_group(item, str(marked.args[0]))
    items.sort(key=_weight)
