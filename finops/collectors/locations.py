"""Turn a user's PATH_OR_URI into the list of local files a collector reads.

A path may be one file, a directory (searched recursively) or a glob; `s3://bucket/prefix`
(optionally ending in a glob such as `*.parquet`) is listed and downloaded through boto3,
and `gs://bucket/prefix` likewise through google-cloud-storage, into a temporary folder
that is removed once the ingest is over. Credentials come from the SDKs' default chains;
nothing here reads or logs a secret.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from finops.errors import IngestError

if TYPE_CHECKING:
    from pyarrow import fs as pafs

_GLOB_CHARS = set("*?[")
S3_ATTEMPTS = 10
"""Attempts per S3 call: throttled calls back off and retry instead of failing the ingest."""


@dataclass(frozen=True)
class LocalFiles:
    """Files ready to read, with the names to show in messages and a way to clean up."""

    uri: str
    files: tuple[Path, ...]
    display_names: dict[Path, str]
    cleanup: Callable[[], None] | None = None

    def name(self, path: Path) -> str:
        return self.display_names.get(path, str(path))

    @contextmanager
    def removed_on_error(self) -> Iterator[None]:
        """Delete downloaded copies if reading them fails (on success the delivery owns them)."""
        try:
            yield
        except BaseException:
            if self.cleanup:
                self.cleanup()
            raise


def resolve(location: str, suffixes: Iterable[str]) -> LocalFiles:
    """List the files at `location` whose names end in one of `suffixes`."""
    wanted = tuple(suffixes)
    if location.startswith("s3://"):
        return _download(location, wanted, _s3)
    if location.startswith("gs://"):
        return _download(location, wanted, _gcs)
    return LocalFiles(location, _local_files(location, wanted), {})


def _local_files(location: str, suffixes: tuple[str, ...]) -> tuple[Path, ...]:
    path = Path(location).expanduser()
    if any(ch in location for ch in _GLOB_CHARS):
        found = [Path(p) for p in glob.glob(str(path), recursive=True)]
    elif path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file()]
    elif path.is_file():
        return (path,)
    else:
        raise IngestError(f"{location}: no such file or directory")
    files = sorted(p for p in found if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise IngestError(f"{location}: no {'/'.join(suffixes)} files found")
    return tuple(files)


def split_s3_uri(uri: str) -> tuple[str, str, str | None]:
    """(bucket, key prefix, glob pattern or None) of an s3:// URI."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise IngestError(f"{uri}: an S3 URI needs a bucket, as in s3://bucket/prefix")
    if any(ch in key for ch in _GLOB_CHARS):
        first_glob = min(key.index(ch) for ch in _GLOB_CHARS if ch in key)
        prefix = key[: key.rfind("/", 0, first_glob) + 1]
        return bucket, prefix, key
    return bucket, key, None


@dataclass(frozen=True)
class _ObjectStore:
    """What differs between S3 and Cloud Storage: listing keys, fetching one, their errors."""

    scheme: str
    service: str
    keys: Callable[[str, str], Iterable[str]]
    fetch: Callable[[str, str, Path], None]
    errors: tuple[type[BaseException], ...]


def _s3() -> _ObjectStore:
    from botocore.exceptions import BotoCoreError, ClientError

    s3, _ = s3_clients()

    def keys(bucket: str, prefix: str) -> Iterable[str]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from (obj["Key"] for obj in page.get("Contents", []))

    def fetch(bucket: str, key: str, local: Path) -> None:
        s3.download_file(bucket, key, str(local))

    return _ObjectStore("s3", "S3", keys, fetch, (BotoCoreError, ClientError))


def _gcs() -> _ObjectStore:
    """Cloud Storage through google-cloud-storage: Application Default Credentials, or an
    emulator named by `STORAGE_EMULATOR_HOST` (as the tests use)."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import storage

    client = storage.Client()

    def keys(bucket: str, prefix: str) -> Iterable[str]:
        yield from (blob.name for blob in client.list_blobs(bucket, prefix=prefix))

    def fetch(bucket: str, key: str, local: Path) -> None:
        client.bucket(bucket).blob(key).download_to_filename(str(local))

    return _ObjectStore("gs", "Cloud Storage", keys, fetch, (GoogleAPIError, GoogleAuthError))


def _download(
    uri: str, suffixes: tuple[str, ...], connect: Callable[[], _ObjectStore]
) -> LocalFiles:
    """Download the matching objects under a bucket prefix into a temporary folder."""
    bucket, prefix, pattern = split_s3_uri("s3://" + uri.split("://", 1)[1])
    workdir = Path(tempfile.mkdtemp(prefix="finops-objects-"))
    files: list[Path] = []
    names: dict[Path, str] = {}
    store: _ObjectStore | None = None
    try:
        store = connect()
        for key in store.keys(bucket, prefix):
            if not key.lower().endswith(suffixes) or (
                pattern and not fnmatch.fnmatch(key, pattern)
            ):
                continue
            # Keys become paths below workdir: keep them there even if a key holds '..'.
            local = workdir / hashlib.sha1(key.encode()).hexdigest()[:12] / Path(key).name
            local.parent.mkdir(parents=True, exist_ok=True)
            store.fetch(bucket, key, local)
            files.append(local)
            names[local] = f"{store.scheme}://{bucket}/{key}"
    except Exception as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if store is not None and isinstance(exc, store.errors):
            raise IngestError(f"{uri}: cannot read from {store.service}: {exc}") from None
        raise
    if not files:
        shutil.rmtree(workdir, ignore_errors=True)
        raise IngestError(f"{uri}: no {'/'.join(suffixes)} objects found")
    ordered = tuple(sorted(files, key=lambda p: names[p]))
    return LocalFiles(uri, ordered, names, lambda: shutil.rmtree(workdir, ignore_errors=True))


def s3_clients(session: Any = None) -> tuple[Any, pafs.S3FileSystem]:
    """A boto3 S3 client and a pyarrow S3FileSystem with the same identity and endpoint.

    boto3 resolves both from its default chain (environment, profile, instance role;
    `AWS_ENDPOINT_URL` for an S3-compatible store); pyarrow is handed what boto3 found,
    since it does not read `AWS_ENDPOINT_URL` itself. Nothing is read from our own files.
    """
    import boto3
    from botocore.config import Config
    from pyarrow import fs

    session = session or boto3.Session()
    client = session.client(
        "s3", config=Config(retries={"mode": "adaptive", "max_attempts": S3_ATTEMPTS})
    )
    options: dict[str, Any] = {
        "region": client.meta.region_name or "us-east-1",
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS),
    }
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options |= {
            "access_key": frozen.access_key,
            "secret_key": frozen.secret_key,
            "session_token": frozen.token,
        }
    else:
        options["anonymous"] = True
    endpoint = urlparse(client.meta.endpoint_url)
    if not (endpoint.hostname or "").endswith("amazonaws.com"):
        options |= {"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme}
    return client, fs.S3FileSystem(**options)


def checksum(files: LocalFiles) -> str:
    """SHA-256 over every file's display name and bytes, in order: same files, same sum."""
    digest = hashlib.sha256()
    for path in files.files:
        digest.update(Path(files.name(path)).name.encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()
