"""S3 objects for the pipeline: errors that say what to fix, listing, cached downloads, verified and conditional
uploads, deleting a prefix, a CSV grown one row at a time (the metrics history) and its QuickSight manifest."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError

from oncology_pipeline import layout
from oncology_pipeline.errors import ConfigurationError, TransientError, is_transient

ABSENT = "*absent"  # `put_bytes(if_match=ABSENT)`: create only
_DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1,000 keys
_ADVICE = {
    "NoSuchBucket": "the bucket does not exist: create it or fix the bucket setting",
    "AccessDenied": "access denied (403): check the credentials and the IAM policy (s3:GetObject, s3:PutObject, "
    "s3:ListBucket); without s3:ListBucket a missing key also answers 403",
    "403": "access denied (403): check the credentials and the IAM policy (s3:GetObject, s3:PutObject, "
    "s3:ListBucket); without s3:ListBucket a missing key also answers 403",
    "InvalidAccessKeyId": "the AWS access key id is not known: fix the credentials (AWS_* variables, profile or "
    "the AwsCredentials block)",
    "SignatureDoesNotMatch": "the AWS secret key is wrong: fix the credentials",
    "ExpiredToken": "the AWS session token has expired: refresh the credentials",
    "NoSuchKey": "the object does not exist: upload it or fix the key setting",
    "404": "the object does not exist: upload it or fix the key setting",
}


@dataclass(frozen=True)
class S3Object:
    """An object written to or read from S3."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        """`s3://bucket/key`."""
        return layout.uri(self.bucket, self.key)


@dataclass(frozen=True)
class CachedDownload:
    """A downloaded object and whether the local cache already held it."""

    path: Path
    source: S3Object
    downloaded: bool


def error_code(exc: ClientError) -> str:
    """The AWS error code of a refused request ("NoSuchKey", "404", "PreconditionFailed", ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def s3_errors(uri: str) -> Iterator[None]:
    """Turn permanent S3 errors into a ConfigurationError that says what to fix; let transient ones through."""
    try:
        yield
    except NoCredentialsError as exc:
        raise ConfigurationError(
            f"{uri}: no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or name a prefect-aws AwsCredentials block in ONCOLOGY_AWS_CREDENTIALS_BLOCK"
        ) from exc
    except ClientError as exc:
        code = error_code(exc)
        if is_transient(exc) or code == "PreconditionFailed":  # a conditional write's answer: the caller decides
            raise
        advice = _ADVICE.get(code, exc.response.get("Error", {}).get("Message", "") or "see the AWS error code")
        raise ConfigurationError(f"{uri}: {code or 'error'}: {advice}") from exc


def _bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in {"404", "NoSuchBucket"}:
            return False
        raise
    return True


def head(s3: Any, bucket: str, key: str) -> S3Object:
    """An object's size, ETag and version."""
    with s3_errors(layout.uri(bucket, key)):
        try:
            meta = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) == "404" and not _bucket_exists(s3, bucket):
                # a HEAD answer has no body: only HeadBucket tells a missing bucket from a missing key
                raise ConfigurationError(f"{layout.uri(bucket, key)}: NoSuchBucket: {_ADVICE['NoSuchBucket']}") from exc
            raise
    return S3Object(bucket, key, int(meta["ContentLength"]), meta["ETag"].strip('"'), meta.get("VersionId"))


def exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether the object exists (a 404 is an answer; other errors raise)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in {"404", "NoSuchKey"}:
            return False
        with s3_errors(layout.uri(bucket, key)):
            raise
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_objects(
    s3: Any, bucket: str, prefix: str, page_size: int = 1000, start_after: str | None = None
) -> list[S3Object]:
    """Every object under `prefix/` (all pages; with `start_after`, only keys that sort after it), sorted by key;
    "folder" markers (keys ending in '/') left out."""
    found: list[S3Object] = []
    after = {} if start_after is None else {"StartAfter": start_after}
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/", PaginationConfig={"PageSize": page_size}, **after
    )
    with s3_errors(layout.uri(bucket, f"{prefix}/")):
        for page in pages:
            found += [
                S3Object(bucket, item["Key"], int(item["Size"]), item["ETag"].strip('"'))
                for item in page.get("Contents", [])
                if not item["Key"].endswith("/")
            ]
    return sorted(found, key=lambda o: o.key)


def delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    """Delete every object whose key starts with `prefix`; returns how many there were."""
    uri = layout.uri(bucket, prefix)
    with s3_errors(uri):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                failed = answer["Errors"][0]
                raise ConfigurationError(
                    f"{uri}: deleting {failed.get('Key')} failed: {failed.get('Code')}: {failed.get('Message')}"
                )
    return len(keys)


def download_cached(s3: Any, bucket: str, key: str, cache_dir: Path) -> CachedDownload:
    """Download unless the cache holds the same ETag (and version); writes the cache file atomically."""
    return download_listed(s3, head(s3, bucket, key), cache_dir)


def download_listed(s3: Any, source: S3Object, cache_dir: Path) -> CachedDownload:
    """`download_cached` of an object whose ETag is known (from `head` or `list_objects`): no HEAD request."""
    bucket, key = source.bucket, source.key
    path = cache_dir / bucket / key
    marker = path.with_name(path.name + ".etag")
    stamp = f"{source.etag} {source.version_id or ''}".strip()
    if path.exists() and marker.exists() and marker.read_text() == stamp:
        return CachedDownload(path, source, downloaded=False)
    try:
        with s3_errors(source.uri):
            response = s3.get_object(Bucket=bucket, Key=key, IfMatch=f'"{source.etag}"')
            data = response["Body"].read()
    except ClientError as exc:
        if error_code(exc) == "PreconditionFailed":  # replaced between HEAD and GET
            raise TransientError(f"{source.uri} changed while it was downloaded: try again") from exc
        raise
    _write_atomically(path, data)
    _write_atomically(marker, stamp.encode())
    return CachedDownload(path, source, downloaded=True)


def get_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if error_code(exc) in {"404", "NoSuchKey"}:
            return None
        with s3_errors(layout.uri(bucket, key)):
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def put_bytes(
    s3: Any, bucket: str, key: str, data: bytes, content_type: str, *, if_match: str | None = None
) -> S3Object:
    """Upload bytes with an MD5 check by S3; returns what S3 stored.

    `if_match`: a conditional write, "*absent" to create only when the key does not exist, else the ETag the
    object must still have (S3 answers 412 PreconditionFailed otherwise, raised as ClientError).
    """
    uri = layout.uri(bucket, key)
    md5 = hashlib.md5(data, usedforsecurity=False)
    condition = {} if if_match is None else {"IfNoneMatch": "*"} if if_match == ABSENT else {"IfMatch": f'"{if_match}"'}
    with s3_errors(uri):
        response = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            ContentMD5=base64.b64encode(md5.digest()).decode(),
            **condition,
        )
    return S3Object(bucket, key, len(data), response["ETag"].strip('"'), response.get("VersionId"))


def put_json(s3: Any, bucket: str, key: str, payload: Any) -> S3Object:
    """Upload a JSON document."""
    return put_bytes(s3, bucket, key, json.dumps(payload, indent=2, default=str).encode(), "application/json")


def upload_directory(s3: Any, bucket: str, prefix: str, directory: Path) -> list[S3Object]:
    """Upload every file of `directory` under `prefix/`, then check each one is there with its size."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    written = []
    for path in files:
        key = f"{prefix}/{path.relative_to(directory).as_posix()}"
        content_type = "application/json" if path.suffix == ".json" else "application/octet-stream"
        written.append(put_bytes(s3, bucket, key, path.read_bytes(), content_type))
    for obj in written:
        stored = head(s3, bucket, obj.key)
        if stored.size != obj.size:
            raise ConfigurationError(f"{obj.uri}: stored {stored.size} bytes, uploaded {obj.size}: upload again")
    return written


def append_csv_row(s3: Any, bucket: str, key: str, row: Mapping[str, object]) -> S3Object:
    """Append one row to a CSV object (created with a header on first use); new columns are added."""
    existing = get_bytes(s3, bucket, key)
    rows = list(csv.DictReader(io.StringIO(existing.decode()))) if existing else []
    rows = [r for r in rows if r.get("model_version") != row.get("model_version")]
    rows.append({k: str(v) for k, v in row.items()})
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return put_bytes(s3, bucket, key, out.getvalue().encode(), "text/csv")


def quicksight_manifest(bucket: str, key: str) -> dict[str, Any]:
    """An Amazon QuickSight S3 manifest for the metrics history CSV."""
    return {
        "fileLocations": [{"URIs": [layout.uri(bucket, key)]}],
        "globalUploadSettings": {"format": "CSV", "delimiter": ",", "textqualifier": '"', "containsHeader": "true"},
    }
