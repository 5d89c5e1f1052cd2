"""The S3 store and the model store over real HTTP: a moto server behind a fault-injecting proxy, clients built
the pipeline's way."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from mypy_boto3_s3 import S3Client

from demo.buckets import create_buckets
from oncology_model.versioning import new_version
from oncology_pipeline import aws, layout, modelstore, releases, s3store
from oncology_pipeline.errors import ConfigurationError, PromotionConflict, is_transient
from oncology_pipeline.fingerprint import Fingerprint, data_files
from oncology_pipeline.settings import PipelineSettings
from tests.support.fault_proxy import FaultProxy, fault_proxy

DATA = b"1000025,5,1,1,1,2,1,3,1,1,2\n1002945,5,4,4,5,7,10,3,2,1,2\n"
DENIED_KEY = "TESTDENIEDACCESSKEY1"


@pytest.fixture(scope="module")
def shared_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """One fault-injecting proxy in front of the session's moto server for this module (starting and
    stopping one per test costs half a second)."""
    with fault_proxy(moto_endpoint) as fault_injector:
        yield fault_injector


@pytest.fixture
def proxy(shared_proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The proxy, with no faults, no denied keys and an empty log for this test."""
    shared_proxy.clear()
    yield shared_proxy
    shared_proxy.clear()


@pytest.fixture(scope="module")
def shared_s3(shared_proxy: FaultProxy) -> S3Client:
    """The pipeline's S3 client (one attempt per call) through the proxy, built once for the module."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.delenv("AWS_PROFILE", raising=False)
        client: S3Client = aws.client(PipelineSettings(s3_endpoint_url=shared_proxy.url), "s3")
    return client


@pytest.fixture
def settings(proxy: FaultProxy, tmp_path: Path) -> PipelineSettings:
    """Settings with this test's own buckets, pointed at the proxy."""
    tag = uuid.uuid4().hex[:12]
    return PipelineSettings(
        s3_endpoint_url=proxy.url,
        data_bucket=f"data-{tag}",
        model_bucket=f"models-{tag}",
        metrics_bucket=f"metrics-{tag}",
        work_dir=tmp_path / "work",
    )


@pytest.fixture
def s3(shared_s3: S3Client, settings: PipelineSettings, proxy: FaultProxy) -> S3Client:
    """The module's client, with this test's buckets created; the proxy log is empty."""
    create_buckets(shared_s3, settings)
    proxy.log.clear()
    return shared_s3


def _own_client(settings: PipelineSettings) -> S3Client:
    """A client of this test's own, for event hooks that must not outlive the test."""
    client: S3Client = aws.client(settings, "s3")
    return client


def _files(directory: Path) -> set[str]:
    """Every file and directory below `directory`, relative, as POSIX paths."""
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*")}


def _bundle(directory: Path, version: str) -> Path:
    """A small model-bundle-like directory."""
    (directory / "extra").mkdir(parents=True)
    (directory / "metadata.json").write_text(json.dumps({"model_version": version}))
    (directory / "model.skops").write_bytes(f"model of {version}".encode())
    (directory / "extra" / "notes.txt").write_text(f"notes of {version}")
    return directory


def _publish(s3: S3Client, bucket: str, tmp_path: Path, version: str) -> list[s3store.S3Object]:
    """Upload a bundle under models/<version>/ and point production at it, as the pipeline does."""
    objects = s3store.upload_directory(s3, bucket, f"models/{version}", _bundle(tmp_path / "src" / version, version))
    _, etag = modelstore.read_pointer_etag(s3, bucket, "models")
    modelstore.write_pointer(s3, bucket, "models", version, objects, expected_etag=etag)
    return objects


# --- download_cached ------------------------------------------------------------------------------


def test_download_cached_downloads_once_then_hits_the_cache(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy
) -> None:
    bucket, key = settings.data_bucket, "wisconsin/data.csv"
    s3store.put_bytes(s3, bucket, key, DATA, "text/csv")

    first = s3store.download_cached(s3, bucket, key, settings.cache_dir)
    assert first.downloaded is True
    assert first.path == settings.cache_dir / bucket / key
    assert first.path.read_bytes() == DATA
    assert first.source.etag == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert first.source.size == len(DATA)
    assert first.source.version_id
    assert proxy.count("GET", f"/{bucket}/{key}") == 1

    second = s3store.download_cached(s3, bucket, key, settings.cache_dir)
    assert second.downloaded is False
    assert second.path == first.path
    assert second.source == first.source
    assert proxy.count("GET", f"/{bucket}/{key}") == 1, "a cache hit must not download"
    assert proxy.count("HEAD", f"/{bucket}/{key}") == 2


def test_download_cached_downloads_again_after_the_object_changes(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy
) -> None:
    bucket, key = settings.data_bucket, "data.csv"
    s3store.put_bytes(s3, bucket, key, DATA, "text/csv")
    first = s3store.download_cached(s3, bucket, key, settings.cache_dir)
    changed = DATA + b"1015425,3,1,1,1,2,2,3,1,1,2\n"
    s3store.put_bytes(s3, bucket, key, changed, "text/csv")

    second = s3store.download_cached(s3, bucket, key, settings.cache_dir)

    assert second.downloaded is True
    assert second.path.read_bytes() == changed
    assert second.source.etag != first.source.etag
    assert second.source.version_id != first.source.version_id
    assert proxy.count("GET", f"/{bucket}/{key}") == 2


def test_download_cached_downloads_again_when_the_cache_file_is_gone(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.data_bucket, "data.csv"
    s3store.put_bytes(s3, bucket, key, DATA, "text/csv")
    first = s3store.download_cached(s3, bucket, key, settings.cache_dir)
    first.path.unlink()

    again = s3store.download_cached(s3, bucket, key, settings.cache_dir)

    assert again.downloaded is True
    assert again.path.read_bytes() == DATA


def test_download_cached_leaves_only_the_file_and_its_etag_marker(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.data_bucket, "a/b/data.csv"
    s3store.put_bytes(s3, bucket, key, DATA, "text/csv")

    result = s3store.download_cached(s3, bucket, key, settings.cache_dir)

    assert _files(settings.cache_dir) == {
        bucket,
        f"{bucket}/a",
        f"{bucket}/a/b",
        f"{bucket}/{key}",
        f"{bucket}/{key}.etag",
    }
    marker = result.path.with_name("data.csv.etag").read_text()
    assert marker == f"{result.source.etag} {result.source.version_id}"


@pytest.mark.parametrize("fault", [503, 0], ids=["503", "connection-reset"])
def test_a_failed_download_keeps_the_cached_copy_and_leaves_no_temp_files(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy, fault: int
) -> None:
    bucket, key = settings.data_bucket, "data.csv"
    s3store.put_bytes(s3, bucket, key, DATA, "text/csv")
    old = s3store.download_cached(s3, bucket, key, settings.cache_dir)
    old_marker = old.path.with_name("data.csv.etag").read_text()
    s3store.put_bytes(s3, bucket, key, b"new,data\n", "text/csv")
    proxy.fail(fault, method="GET", path=f"/{bucket}/{key}")

    with pytest.raises(Exception) as raised:
        s3store.download_cached(s3, bucket, key, settings.cache_dir)

    assert is_transient(raised.value)
    assert old.path.read_bytes() == DATA
    assert old.path.with_name("data.csv.etag").read_text() == old_marker
    assert _files(settings.cache_dir / bucket) == {"data.csv", "data.csv.etag"}
    retried = s3store.download_cached(s3, bucket, key, settings.cache_dir)
    assert retried.downloaded is True
    assert retried.path.read_bytes() == b"new,data\n"


def test_download_cached_of_a_missing_key_says_the_object_does_not_exist(
    s3: S3Client, settings: PipelineSettings
) -> None:
    bucket, key = settings.data_bucket, "breast-cancer-wisconsin/missing.data"

    with pytest.raises(ConfigurationError) as raised:
        s3store.download_cached(s3, bucket, key, settings.cache_dir)

    message = str(raised.value)
    assert f"s3://{bucket}/{key}" in message
    assert "the object does not exist" in message
    assert "upload it or fix the key setting" in message
    assert not (settings.cache_dir / bucket / key).exists()


def test_download_cached_of_an_object_replaced_between_head_and_get_is_worth_a_retry(
    s3: S3Client, settings: PipelineSettings
) -> None:
    """BUG: the GET is conditional on the HEAD's ETag (If-Match); when another writer replaces the object in
    between, S3 answers 412 PreconditionFailed and s3_errors turns it into a ConfigurationError ("don't retry"),
    although a retry (a fresh HEAD, then GET) succeeds."""
    bucket, key = settings.data_bucket, "data.csv"
    s3store.put_bytes(s3, bucket, key, DATA, "text/csv")
    hooked = _own_client(settings)

    def replace_object(**_: Any) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"replaced,meanwhile\n")

    hooked.meta.events.register_first("before-call.s3.GetObject", replace_object)

    with pytest.raises(Exception) as raised:
        s3store.download_cached(hooked, bucket, key, settings.cache_dir)

    assert not isinstance(raised.value, ConfigurationError), str(raised.value)
    assert is_transient(raised.value)


# --- small objects ----------------------------------------------------------------------------------


# --- labelled files: listed, downloaded by ETag, fingerprinted ----------------------------------------------------


def test_labelled_files_are_listed_page_by_page_cached_by_etag_and_change_the_fingerprint_only_when_added(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy
) -> None:
    bucket, prefix = settings.data_bucket, settings.labelled_prefix
    for run in ("2", "1", "3"):
        s3store.put_bytes(s3, bucket, layout.labelled_key(prefix, run), DATA + run.encode(), "text/csv")
    s3store.put_bytes(s3, bucket, f"{prefix}/", b"", "application/x-directory")  # a console "folder"
    s3store.put_bytes(s3, bucket, f"{prefix}-old/labelled-9.csv", DATA, "text/csv")  # not under the prefix
    base = {
        "data_uri": f"s3://{bucket}/data.csv",
        "data_etag": "e",
        "data_sha256": "1" * 64,
        "config_sha256": "2" * 64,
        "code_sha256": "3" * 64,
        "lock_sha256": None,
        "base_image": "base",
    }

    def night() -> Fingerprint:
        listed = s3store.list_objects(s3, bucket, prefix, page_size=2)
        downloads = [s3store.download_listed(s3, obj, settings.cache_dir) for obj in listed]
        return Fingerprint.model_validate({**base, "labelled_data": data_files(downloads)})

    proxy.log.clear()
    first = night()
    assert [f.key for f in first.labelled_data] == [f"{prefix}/labelled-{run}.csv" for run in ("1", "2", "3")]
    assert first.labelled_data[0].sha256 == hashlib.sha256(DATA + b"1").hexdigest()
    assert proxy.count("GET", f"/{bucket}?list-type=2") == 2  # two pages of two
    assert proxy.count("GET", f"/{bucket}/{prefix}/labelled-") == 3 and proxy.count("HEAD", f"/{bucket}/") == 0
    assert night().digest == first.digest  # nothing changed: the same fingerprint
    assert proxy.count("GET", f"/{bucket}/{prefix}/labelled-") == 3  # and no download
    s3store.put_bytes(s3, bucket, layout.labelled_key(prefix, "4"), DATA + b"4", "text/csv")
    assert night().digest != first.digest
    assert first.digest != Fingerprint.model_validate(base).digest


def test_put_bytes_head_exists_and_get_bytes_agree(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.metrics_bucket, "trainer/raw.bin"

    written = s3store.put_bytes(s3, bucket, key, b"\x00\x01binary", "application/octet-stream")

    assert written.uri == f"s3://{bucket}/{key}"
    assert written.size == 8
    assert written.etag == hashlib.md5(b"\x00\x01binary", usedforsecurity=False).hexdigest()
    assert written.version_id
    assert s3store.head(s3, bucket, key) == written
    assert s3store.exists(s3, bucket, key) is True
    assert s3store.get_bytes(s3, bucket, key) == b"\x00\x01binary"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/octet-stream"


def test_missing_objects_are_an_answer_not_an_error(s3: S3Client, settings: PipelineSettings) -> None:
    bucket = settings.metrics_bucket
    assert s3store.exists(s3, bucket, "no/such/key") is False
    assert s3store.get_bytes(s3, bucket, "no/such/key") is None


def test_head_of_a_missing_key_is_a_configuration_error(s3: S3Client, settings: PipelineSettings) -> None:
    with pytest.raises(ConfigurationError, match=rf"s3://{settings.metrics_bucket}/nothing: 404: the object"):
        s3store.head(s3, settings.metrics_bucket, "nothing")


def test_put_json_stores_readable_json_with_its_content_type(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.metrics_bucket, "trainer/reports/run.json"
    payload = {"version": "v1", "at": datetime(2026, 11, 25, 2, 0, tzinfo=UTC), "path": Path("a/b"), "n": [1, 2]}

    written = s3store.put_json(s3, bucket, key, payload)

    stored = s3store.get_bytes(s3, bucket, key)
    assert stored is not None
    assert json.loads(stored) == {"version": "v1", "at": "2026-11-25 02:00:00+00:00", "path": "a/b", "n": [1, 2]}
    assert written.size == len(stored)
    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/json"


def test_upload_directory_keys_are_prefix_slash_relative_path(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy, tmp_path: Path
) -> None:
    bucket, version = settings.model_bucket, new_version()
    directory = _bundle(tmp_path / "bundle", version)

    written = s3store.upload_directory(s3, bucket, f"models/{version}", directory)

    assert [o.key for o in written] == [
        f"models/{version}/extra/notes.txt",
        f"models/{version}/metadata.json",
        f"models/{version}/model.skops",
    ]
    for obj in written:
        relative = obj.key.removeprefix(f"models/{version}/")
        assert s3store.get_bytes(s3, bucket, obj.key) == (directory / relative).read_bytes()
        assert obj.size == (directory / relative).stat().st_size
        assert proxy.count("HEAD", f"/{bucket}/{obj.key}") == 1, "each upload is checked"
    assert s3.head_object(Bucket=bucket, Key=f"models/{version}/metadata.json")["ContentType"] == "application/json"
    assert s3.head_object(Bucket=bucket, Key=f"models/{version}/model.skops")["ContentType"] == (
        "application/octet-stream"
    )


def test_upload_directory_refuses_an_object_stored_with_another_size(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    directory = _bundle(tmp_path / "bundle", "v")

    def truncate(parsed: dict[str, Any], **_: Any) -> None:
        parsed["ContentLength"] = 1

    hooked = _own_client(settings)
    hooked.meta.events.register("after-call.s3.HeadObject", truncate)

    with pytest.raises(ConfigurationError, match=r"models/v/extra/notes\.txt: stored 1 bytes, uploaded \d+: upload"):
        s3store.upload_directory(hooked, settings.model_bucket, "models/v", directory)


# --- production pointer and bundles -----------------------------------------------------------------


def test_read_pointer_is_none_before_the_first_model(s3: S3Client, settings: PipelineSettings) -> None:
    assert modelstore.read_pointer(s3, settings.model_bucket, "models") is None


def test_write_pointer_chains_the_previous_version(s3: S3Client, settings: PipelineSettings, tmp_path: Path) -> None:
    bucket = settings.model_bucket
    first, second = new_version(), new_version()
    first_objects = _publish(s3, bucket, tmp_path, first)
    pointer = modelstore.read_pointer(s3, bucket, "models")
    assert pointer is not None
    assert pointer.model_version == first
    assert pointer.previous_version is None
    assert pointer.keys == [o.key for o in first_objects]

    before = datetime.now(UTC)
    second_objects = _publish(s3, bucket, tmp_path, second)

    pointer = modelstore.read_pointer(s3, bucket, "models")
    assert pointer is not None
    assert pointer.model_version == second
    assert pointer.previous_version == first
    assert pointer.keys == [o.key for o in second_objects]
    assert pointer.updated_at.tzinfo is not None
    assert pointer.updated_at >= before.replace(microsecond=0)
    stored = s3.head_object(Bucket=bucket, Key=f"models/{layout.POINTER_FILE}")
    assert stored["ContentType"] == "application/json"


def test_writing_the_pointer_again_for_the_same_version_keeps_the_previous_version(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    """BUG: upload_model_bundle (a task with retries) writes the pointer; when it is run again for the same
    version, write_pointer records the version as its own previous_version and the way back is lost."""
    bucket = settings.model_bucket
    first, second = new_version(), new_version()
    _publish(s3, bucket, tmp_path, first)
    objects = _publish(s3, bucket, tmp_path, second)

    _, etag = modelstore.read_pointer_etag(s3, bucket, "models")
    modelstore.write_pointer(s3, bucket, "models", second, objects, expected_etag=etag)

    pointer = modelstore.read_pointer(s3, bucket, "models")
    assert pointer is not None
    assert pointer.model_version == second
    assert pointer.previous_version == first


def test_fetch_bundle_is_none_before_the_first_model(s3: S3Client, settings: PipelineSettings, tmp_path: Path) -> None:
    assert modelstore.fetch_bundle(s3, settings.model_bucket, "models", tmp_path / "models") is None
    assert not (tmp_path / "models").exists()


def test_fetch_bundle_downloads_production_via_the_pointer_once(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy, tmp_path: Path
) -> None:
    bucket, cache = settings.model_bucket, tmp_path / "models"
    old, current = new_version(), new_version()
    _publish(s3, bucket, tmp_path, old)
    _publish(s3, bucket, tmp_path, current)

    found = modelstore.fetch_bundle(s3, bucket, "models", cache)

    assert found == (current, cache / current)
    assert _files(cache / current) == {"extra", "extra/notes.txt", "metadata.json", "model.skops"}
    assert (cache / current / "model.skops").read_bytes() == f"model of {current}".encode()
    assert json.loads((cache / current / "metadata.json").read_text()) == {"model_version": current}
    assert _files(cache) == {current, *(f"{current}/{f}" for f in _files(cache / current))}, "no staging left"
    downloads = proxy.count("GET", f"/{bucket}/models/{current}/")

    assert modelstore.fetch_bundle(s3, bucket, "models", cache) == (current, cache / current)
    assert proxy.count("GET", f"/{bucket}/models/{current}/") == downloads == 3, "a cached version is not fetched"


def test_fetch_bundle_of_a_given_version_lists_its_files(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket, cache = settings.model_bucket, tmp_path / "models"
    old, current = new_version(), new_version()
    _publish(s3, bucket, tmp_path, old)
    _publish(s3, bucket, tmp_path, current)

    found = modelstore.fetch_bundle(s3, bucket, "models", cache, version=old)

    assert found == (old, cache / old)
    assert (cache / old / "model.skops").read_bytes() == f"model of {old}".encode()
    assert (cache / old / "extra" / "notes.txt").read_text() == f"notes of {old}"
    assert not (cache / current).exists()


def test_fetch_bundle_of_an_unknown_version_is_a_configuration_error(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket = settings.model_bucket
    known = new_version()
    _publish(s3, bucket, tmp_path, known)
    unknown = known[:-1] + ("0" if known[-1] != "0" else "1")

    with pytest.raises(ConfigurationError) as raised:
        modelstore.fetch_bundle(s3, bucket, "models", tmp_path / "models", version=unknown)

    assert str(raised.value) == f"s3://{bucket}/models/{unknown}/ holds no model: check the version"
    assert not (tmp_path / "models" / unknown).exists()


@pytest.mark.parametrize("fault", [503, 0], ids=["503", "connection-reset"])
def test_download_version_failing_midway_leaves_no_directory(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy, tmp_path: Path, fault: int
) -> None:
    bucket, cache, version = settings.model_bucket, tmp_path / "models", new_version()
    objects = _publish(s3, bucket, tmp_path, version)
    keys = [o.key for o in objects]
    proxy.fail(fault, method="GET", path=f"/{bucket}/{keys[1]}")

    with pytest.raises(Exception) as raised:
        modelstore.download_version(s3, bucket, "models", version, keys, cache / version)

    assert is_transient(raised.value)
    assert proxy.count("GET", f"/{bucket}/{keys[0]}") == 1, "the first file was downloaded"
    assert list(cache.iterdir()) == [], "neither the version directory nor a staging directory is left"
    assert modelstore.fetch_bundle(s3, bucket, "models", cache) == (version, cache / version)


def test_download_version_refused_midway_leaves_no_directory(
    s3: S3Client,
    settings: PipelineSettings,
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket, cache, version = settings.model_bucket, tmp_path / "models", new_version()
    objects = _publish(s3, bucket, tmp_path, version)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DENIED_KEY)
    revoked = _own_client(settings)

    def revoke_after_the_first_file(**_: Any) -> None:
        proxy.deny_access_key(DENIED_KEY)

    revoked.meta.events.register("after-call.s3.GetObject", revoke_after_the_first_file)

    with pytest.raises(ConfigurationError) as raised:
        modelstore.download_version(revoked, bucket, "models", version, [o.key for o in objects], cache / version)

    assert str(raised.value).startswith(f"s3://{bucket}/{objects[1].key}: InvalidAccessKeyId: ")
    assert [status for method, _, status in proxy.log if method == "GET"][-2:] == [200, 403]
    assert list(cache.iterdir()) == [], "neither the version directory nor a staging directory is left"


def test_download_version_of_a_pointer_listing_a_missing_file(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket, cache, version = settings.model_bucket, tmp_path / "models", new_version()
    objects = _publish(s3, bucket, tmp_path, version)
    s3.delete_object(Bucket=bucket, Key=objects[2].key)

    with pytest.raises(ConfigurationError) as raised:
        modelstore.fetch_bundle(s3, bucket, "models", cache)

    assert str(raised.value) == f"s3://{bucket}/{objects[2].key} is listed in the production pointer but missing"
    assert list(cache.iterdir()) == []


def test_download_version_replaces_an_existing_directory(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket, version = settings.model_bucket, new_version()
    objects = _publish(s3, bucket, tmp_path, version)
    dest = tmp_path / "models" / version
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from an older download")

    assert modelstore.download_version(s3, bucket, "models", version, [o.key for o in objects], dest) == dest

    assert _files(dest) == {"extra", "extra/notes.txt", "metadata.json", "model.skops"}
    assert _files(tmp_path / "models") == {version, *(f"{version}/{f}" for f in _files(dest))}


# --- metrics history ------------------------------------------------------------------------------------


def _rows(s3: S3Client, bucket: str, key: str) -> tuple[list[str], list[dict[str, str]]]:
    data = s3store.get_bytes(s3, bucket, key)
    assert data is not None
    reader = csv.DictReader(io.StringIO(data.decode()))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def test_append_csv_row_writes_a_header_then_appends(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.metrics_bucket, "trainer/metrics/history.csv"

    first = s3store.append_csv_row(s3, bucket, key, {"model_version": "v1", "recall": 0.97, "gate_passed": True})

    assert s3store.get_bytes(s3, bucket, key) == b"model_version,recall,gate_passed\nv1,0.97,True\n"
    assert first.size == len(b"model_version,recall,gate_passed\nv1,0.97,True\n")
    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "text/csv"

    s3store.append_csv_row(s3, bucket, key, {"model_version": "v2", "recall": 0.98, "gate_passed": False})

    columns, rows = _rows(s3, bucket, key)
    assert columns == ["model_version", "recall", "gate_passed"]
    assert rows == [
        {"model_version": "v1", "recall": "0.97", "gate_passed": "True"},
        {"model_version": "v2", "recall": "0.98", "gate_passed": "False"},
    ]


def test_append_csv_row_replaces_the_row_of_the_same_version(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.metrics_bucket, "history.csv"
    for version, recall in [("v1", 0.9), ("v2", 0.91), ("v1", 0.95)]:
        s3store.append_csv_row(s3, bucket, key, {"model_version": version, "recall": recall})

    _, rows = _rows(s3, bucket, key)
    assert sorted((r["model_version"], r["recall"]) for r in rows) == [("v1", "0.95"), ("v2", "0.91")]


def test_append_csv_row_adds_new_columns(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.metrics_bucket, "history.csv"
    s3store.append_csv_row(s3, bucket, key, {"model_version": "v1", "recall": 0.9})
    s3store.append_csv_row(s3, bucket, key, {"model_version": "v2", "recall": 0.91, "brier": 0.05})

    columns, rows = _rows(s3, bucket, key)

    assert columns == ["model_version", "recall", "brier"]
    assert rows == [
        {"model_version": "v1", "recall": "0.9", "brier": ""},
        {"model_version": "v2", "recall": "0.91", "brier": "0.05"},
    ]


def test_quicksight_manifest_points_at_the_history_csv(s3: S3Client, settings: PipelineSettings) -> None:
    bucket, key = settings.metrics_bucket, "trainer/metrics/history.csv"
    s3store.append_csv_row(s3, bucket, key, {"model_version": "v1", "recall": 0.9})

    manifest = s3store.quicksight_manifest(bucket, key)

    assert manifest == {
        "fileLocations": [{"URIs": [f"s3://{bucket}/{key}"]}],
        "globalUploadSettings": {"format": "CSV", "delimiter": ",", "textqualifier": '"', "containsHeader": "true"},
    }
    uri = manifest["fileLocations"][0]["URIs"][0]
    listed_bucket, listed_key = uri.removeprefix("s3://").split("/", 1)
    csv_bytes = s3store.get_bytes(s3, listed_bucket, listed_key)
    assert csv_bytes is not None
    assert csv_bytes.decode().splitlines()[0] == "model_version,recall", "containsHeader: the first line is the header"
    s3store.put_json(s3, bucket, "trainer/metrics/quicksight-manifest.json", manifest)
    stored = s3store.get_bytes(s3, bucket, "trainer/metrics/quicksight-manifest.json")
    assert stored is not None
    assert json.loads(stored) == manifest


# --- errors through the proxy -----------------------------------------------------------------------------

Call = Callable[[S3Client, PipelineSettings], object]

CALLS: dict[str, tuple[str, Call]] = {
    "head": ("HEAD", lambda s3, st: s3store.head(s3, st.data_bucket, "data.csv")),
    "exists": ("HEAD", lambda s3, st: s3store.exists(s3, st.data_bucket, "data.csv")),
    "get_bytes": ("GET", lambda s3, st: s3store.get_bytes(s3, st.data_bucket, "data.csv")),
    "download_cached": ("GET", lambda s3, st: s3store.download_cached(s3, st.data_bucket, "data.csv", st.cache_dir)),
    "put_bytes": ("PUT", lambda s3, st: s3store.put_bytes(s3, st.data_bucket, "data.csv", b"x", "text/csv")),
    "append_csv_row": ("PUT", lambda s3, st: s3store.append_csv_row(s3, st.data_bucket, "data.csv", {"a": 1})),
}


@pytest.mark.parametrize("fault", [503, 500, 0], ids=["503", "500", "connection-reset"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_server_errors_and_resets_are_transient(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy, call: str, fault: int
) -> None:
    method, run = CALLS[call]
    s3store.put_bytes(s3, settings.data_bucket, "data.csv", DATA, "text/csv")
    proxy.log.clear()
    proxy.fail(fault, method=method, path=f"/{settings.data_bucket}/data.csv")

    with pytest.raises(Exception) as raised:
        run(s3, settings)

    assert not isinstance(raised.value, ConfigurationError)
    assert is_transient(raised.value), repr(raised.value)
    assert (method, f"/{settings.data_bucket}/data.csv", fault) in proxy.log
    assert proxy.count(method, f"/{settings.data_bucket}/data.csv") == 1, "one attempt: retries are the task's"


@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_unknown_access_key_is_a_configuration_error_naming_the_uri(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    s3store.put_bytes(s3, settings.data_bucket, "data.csv", DATA, "text/csv")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DENIED_KEY)
    denied: S3Client = aws.client(settings, "s3")
    proxy.deny_access_key(DENIED_KEY)

    with pytest.raises(ConfigurationError) as raised:
        CALLS[call][1](denied, settings)

    message = str(raised.value)
    assert message.startswith(f"s3://{settings.data_bucket}/data.csv: ")
    assert "fix the credentials" in message or "check the credentials and the IAM policy" in message
    assert not is_transient(raised.value)
    assert any(status == 403 for _, _, status in proxy.log)


@pytest.mark.parametrize("call", ["get_bytes", "put_bytes", "append_csv_row"])
def test_a_missing_bucket_is_a_configuration_error_saying_to_create_it(
    s3: S3Client, settings: PipelineSettings, call: str
) -> None:
    missing = settings.with_overrides({"data_bucket": f"missing-{uuid.uuid4().hex[:12]}"})

    with pytest.raises(ConfigurationError) as raised:
        CALLS[call][1](s3, missing)

    assert str(raised.value) == (
        f"s3://{missing.data_bucket}/data.csv: NoSuchBucket: the bucket does not exist: create it or fix the bucket "
        "setting"
    )
    assert not is_transient(raised.value)


@pytest.mark.parametrize("call", ["download_cached", "head"])
def test_a_missing_bucket_on_head_is_reported_as_a_missing_bucket(
    s3: S3Client, settings: PipelineSettings, call: str
) -> None:
    """BUG: a HEAD on a missing bucket answers a bare 404 (no body, no error code), and s3_errors reports it
    as 'the object does not exist: upload it or fix the key setting', which sends the reader to the key when
    the bucket is what is missing (a HeadBucket on a 404 would tell them apart)."""
    missing = settings.with_overrides({"data_bucket": f"missing-{uuid.uuid4().hex[:12]}"})

    with pytest.raises(ConfigurationError) as raised:
        CALLS[call][1](s3, missing)

    message = str(raised.value)
    assert message.startswith(f"s3://{missing.data_bucket}/data.csv: ")
    assert "the bucket does not exist: create it or fix the bucket setting" in message


def test_listing_a_version_in_a_missing_bucket_is_a_configuration_error(s3: S3Client, tmp_path: Path) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"

    with pytest.raises(ConfigurationError, match=rf"^s3://{bucket}/models/v1/: NoSuchBucket: the bucket does not"):
        modelstore.fetch_bundle(s3, bucket, "models", tmp_path, version="v1")


# --- compare-and-swap of the pointer --------------------------------------------------------------


def test_two_writers_of_the_pointer_never_lose_an_update(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket = settings.model_bucket
    first, mine, theirs = new_version(), new_version(), new_version()
    _publish(s3, bucket, tmp_path, first)
    read_by_both = modelstore.read_pointer_etag(s3, bucket, "models")[1]
    objects = s3store.upload_directory(s3, bucket, f"models/{mine}", _bundle(tmp_path / "mine", mine))
    modelstore.write_pointer(s3, bucket, "models", theirs, objects, expected_etag=read_by_both)  # they win

    with pytest.raises(PromotionConflict, match=f"production is now {theirs}. Nothing was overwritten"):
        modelstore.write_pointer(s3, bucket, "models", mine, objects, expected_etag=read_by_both)

    pointer = modelstore.read_pointer(s3, bucket, "models")
    assert pointer is not None and (pointer.model_version, pointer.previous_version) == (theirs, first)


def test_the_first_pointer_is_created_only_when_there_is_none(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket, version = settings.model_bucket, new_version()
    objects = s3store.upload_directory(s3, bucket, f"models/{version}", _bundle(tmp_path / "v", version))
    assert modelstore.read_pointer_etag(s3, bucket, "models") == (None, s3store.ABSENT)
    modelstore.write_pointer(s3, bucket, "models", version, objects, expected_etag=s3store.ABSENT)
    with pytest.raises(PromotionConflict):
        modelstore.write_pointer(s3, bucket, "models", new_version(), objects, expected_etag=s3store.ABSENT)


def test_a_lost_race_inside_s3_is_refused_by_the_conditional_put(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    """Both writers read the same ETag and both pass the early check; S3's If-Match refuses the second PUT."""
    bucket, version = settings.model_bucket, new_version()
    objects = _publish(s3, bucket, tmp_path, version)
    key = f"models/{layout.POINTER_FILE}"
    stale = modelstore.read_pointer_etag(s3, bucket, "models")[1]
    s3store.put_bytes(s3, bucket, key, b"{}", "application/json", if_match=stale)  # someone else's write
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3store.put_bytes(s3, bucket, key, b"{}", "application/json", if_match=stale)
    assert objects


def test_a_retried_promotion_that_already_landed_succeeds(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket, version, image = settings.model_bucket, new_version(), "registry.local/web@sha256:" + "1" * 64
    objects = s3store.upload_directory(s3, bucket, f"models/{version}", _bundle(tmp_path / "v", version))
    read = modelstore.read_pointer_etag(s3, bucket, "models")[1]
    first = modelstore.write_pointer(s3, bucket, "models", version, objects, expected_etag=read, image=image)
    again = modelstore.write_pointer(s3, bucket, "models", version, objects, expected_etag=read, image=image)
    assert again.etag == first.etag
    with pytest.raises(PromotionConflict):  # the same version with another image is somebody else's write
        modelstore.write_pointer(s3, bucket, "models", version, objects, expected_etag=read, image=image + "0")


# --- promotion: records first, the pointer by compare-and-swap, then the records it names ---------------------


def _promote(s3: S3Client, bucket: str, version: str) -> s3store.S3Object:
    """Promote a stored `version` the way the deploy does (after reading the pointer's ETag)."""
    etag = modelstore.read_pointer_etag(s3, bucket, "models")[1]
    image = f"registry.local/web@sha256:{hashlib.sha256(version.encode()).hexdigest()}"
    return releases.promote(s3, bucket, "models", version, image=image, expected_etag=etag, release=version)


def _production_records(s3: S3Client, bucket: str, *versions: str) -> list[str]:
    """Which of `versions` have a release record saying `production: true`."""
    records = [releases.read_record(s3, bucket, version) for version in versions]
    return [r.model_version for r in records if r is not None and r.production]


def _stored(s3: S3Client, bucket: str, tmp_path: Path, *versions: str) -> None:
    for version in versions:
        s3store.upload_directory(s3, bucket, f"models/{version}", _bundle(tmp_path / version, version))
        releases.write_record(s3, bucket, releases.ReleaseRecord(model_version=version))


def test_a_promotion_retried_after_it_landed_leaves_one_production_record_and_one_promotion_time(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket, v1, v2 = settings.model_bucket, new_version(), new_version()
    _stored(s3, bucket, tmp_path, v1, v2)
    _promote(s3, bucket, v1)
    etag = modelstore.read_pointer_etag(s3, bucket, "models")[1]
    image = f"registry.local/web@sha256:{hashlib.sha256(v2.encode()).hexdigest()}"
    for _ in range(2):  # the second: a retry whose first reply was lost
        releases.promote(s3, bucket, "models", v2, image=image, expected_etag=etag, release=v2)
    assert _production_records(s3, bucket, v1, v2) == [v2]
    new, old = releases.read_record(s3, bucket, v2), releases.read_record(s3, bucket, v1)
    assert new is not None and len(new.promoted_at) == 1 and not new.promoting
    assert old is not None and old.superseded_by == v2


def test_s3_failing_after_the_pointer_write_is_finished_by_the_next_run_never_undone(
    s3: S3Client, settings: PipelineSettings, proxy: FaultProxy, tmp_path: Path
) -> None:
    bucket, v1, v2 = settings.model_bucket, new_version(), new_version()
    _stored(s3, bucket, tmp_path, v1, v2)
    _promote(s3, bucket, v1)
    proxy.fail(503, method="PUT", path=f"/releases/{v1}.json", count=10)  # only written after the pointer
    with pytest.raises(ClientError, match="SlowDown"):  # transient: the task's retries would try again
        _promote(s3, bucket, v2)
    pointer = modelstore.read_pointer(s3, bucket, "models")
    assert pointer is not None and (pointer.model_version, pointer.previous_version) == (v2, v1)
    assert _production_records(s3, bucket, v1, v2) == [v1, v2]  # half-done: what the next run finishes
    proxy.clear()
    assert releases.finish_promotion(s3, bucket, "models") == [f"{v1}: production: false, superseded by {v2}"]
    assert _production_records(s3, bucket, v1, v2) == [v2]
    assert releases.finish_promotion(s3, bucket, "models") == []  # nothing left to do


def test_a_crash_between_the_pointer_and_the_records_is_finished_from_the_pointer(
    s3: S3Client, settings: PipelineSettings, tmp_path: Path
) -> None:
    bucket, v1, v2 = settings.model_bucket, new_version(), new_version()
    _stored(s3, bucket, tmp_path, v1, v2)
    _promote(s3, bucket, v1)
    record = releases.read_record(s3, bucket, v2)
    assert record is not None
    releases.write_record(s3, bucket, releases.merge(record, {"promoting": True}))  # the steps before the crash:
    etag = modelstore.read_pointer_etag(s3, bucket, "models")[1]  # the record, then the pointer
    objects = [s3store.head(s3, bucket, k) for k in modelstore.version_keys(s3, bucket, "models", v2)]
    modelstore.write_pointer(s3, bucket, "models", v2, objects, expected_etag=etag)
    assert _production_records(s3, bucket, v1, v2) == [v1]

    assert releases.finish_promotion(s3, bucket, "models") == [
        f"{v2}: production: true",
        f"{v1}: production: false, superseded by {v2}",
    ]
    pointer = modelstore.read_pointer(s3, bucket, "models")
    new = releases.read_record(s3, bucket, v2)
    assert pointer is not None and new is not None and new.promoted_at == [pointer.updated_at]
    assert _production_records(s3, bucket, v1, v2) == [v2] and not new.promoting
