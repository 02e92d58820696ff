"""The audio store on an S3-compatible object store (AWS S3, MinIO, SeaweedFS, ...).

Objects are keyed `<prefix>/<digest[:2]>/<digest>` in one bucket. Decoders want a path,
so `local_file` keeps verified copies in a local cache folder, least recently used
dropped first; `open` streams the object and refuses it at its end if its bytes are not
the ones its name says.

The bucket is the operator's: the store never creates one (a typo in AGR_AUDIO_STORE_URL
would otherwise quietly make a new, empty bucket). `ensure_bucket` exists for tests and
for an operator's first set-up.
"""

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from core.settings import Settings, get_settings
from storage.audio_store import DIGEST, AudioStore, ObjectMissing, checked

CHUNK = 1024 * 1024
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_PART_SUFFIX = ".part"


class ObjectCorrupt(RuntimeError):
    """The stored object's bytes do not hash to its name: never handed to a decoder."""


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _MISSING_CODES


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` -> (bucket, prefix without surrounding slashes)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"AGR_AUDIO_STORE_URL {url!r}: no bucket named (s3://bucket[/prefix])")
    return bucket, prefix.strip("/")


def client_from_settings(settings: Settings):
    """A boto3 S3 client with the settings' endpoint and keys; unset keys leave boto3's own
    chain (AWS_* variables, ~/.aws, an instance role) to find them."""
    keys = {}
    if settings.s3_access_key_id:
        secret = settings.s3_secret_access_key
        keys = {"aws_access_key_id": settings.s3_access_key_id,
                "aws_secret_access_key": secret.get_secret_value() if secret else None}
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 5},  # transient 5xx, throttling, resets
        connect_timeout=10, read_timeout=60,
        max_pool_connections=4 * settings.store_puts_per_request,  # several requests' puts at once
        # Self-hosted servers (MinIO, SeaweedFS) serve buckets as paths, not as host names.
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    # A session of its own: boto3's default session is shared and not thread-safe.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
                          config=config, **keys)


class S3AudioStore(AudioStore):
    def __init__(self, client, bucket: str, prefix: str, cache_dir: Path, cache_bytes: int,
                 in_use_grace_s: float = 60.0):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.cache_dir = cache_dir
        self.cache_bytes = cache_bytes
        # Copies used this recently are never evicted: another process may have been
        # handed the path and not yet opened it (an open file survives its unlinking).
        self.in_use_grace_s = in_use_grace_s

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3AudioStore":
        bucket, prefix = parse_url(settings.audio_store_url or "")
        cache_dir = settings.audio_cache_dir or settings.data_dir / "audio-cache"
        return cls(client_from_settings(settings), bucket, prefix, cache_dir, settings.audio_cache_bytes)

    def key(self, digest: str) -> str:
        digest = checked(digest)
        name = f"{digest[:2]}/{digest}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (tests, an operator's first set-up)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if not _missing(error):
                raise
            region = self.client.meta.region_name
            # AWS refuses a LocationConstraint of us-east-1 and wants one everywhere else.
            where = {"LocationConstraint": region}
            if region in (None, "us-east-1"):
                self.client.create_bucket(Bucket=self.bucket)
            else:
                self.client.create_bucket(Bucket=self.bucket, CreateBucketConfiguration=where)

    # --- the interface ---

    def put(self, digest: str, staged: Path) -> None:
        # On failure the staged file is left for the caller to discard or retry with.
        if not self.exists(digest):
            # upload_file goes multipart above 8 MiB, parts in parallel and retried alone.
            self.client.upload_file(str(staged), self.bucket, self.key(digest))
        staged.unlink(missing_ok=True)

    def exists(self, digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as error:
            if _missing(error):
                return False
            raise  # unreachable or refused is not "absent": a put must not be skipped
        return True

    def open(self, digest: str) -> BinaryIO:
        body = self._get(digest)
        return io.BufferedReader(_VerifyingStream(body, digest, self._where(digest)), buffer_size=CHUNK)

    def delete(self, digest: str) -> None:
        # S3 answers a delete of a missing key with success: idempotent as it stands.
        self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))
        self._cached(digest).unlink(missing_ok=True)  # other machines' copies age out of their caches

    def digests(self) -> Iterator[tuple[str, datetime]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
        for page in pages:
            for entry in page.get("Contents", []):
                name = entry["Key"].rsplit("/", 1)[-1]
                if DIGEST.match(name):
                    yield name, entry["LastModified"]

    def local_file(self, digest: str) -> Path:
        # Content-addressed and never rewritten: a copy verified once stays right.
        path = self._cached(digest)
        if path.is_file():
            os.utime(path)  # recency for eviction (atime is unreliable: noatime mounts)
            return path
        self._download(digest, path)
        self._evict(keep=path)
        return path

    # --- the local cache ---

    def _where(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self.key(digest)}"

    def _get(self, digest: str):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"]
        except ClientError as error:
            if _missing(error):
                raise ObjectMissing(f"audio object {digest} is not in the store ({self._where(digest)})") from None
            raise

    def _cached(self, digest: str) -> Path:
        digest = checked(digest)
        return self.cache_dir / digest[:2] / digest

    def _download(self, digest: str, path: Path) -> None:
        """Stream the object into a temporary file beside `path`, hashing as it comes, and
        rename it into place only when the hash is the digest: readers never see a partial
        or a wrong copy, and processes sharing the cache may race harmlessly."""
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self._get(digest)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{digest[:12]}.", suffix=_PART_SUFFIX)
        try:
            sha = hashlib.sha256()
            with body, os.fdopen(fd, "wb") as out:
                for chunk in body.iter_chunks(CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
            _refuse_unless(sha.hexdigest(), digest, self._where(digest))
            os.chmod(temp, 0o444)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def _evict(self, keep: Path) -> None:
        """Drop least recently used copies until the cache fits audio_cache_bytes. The copy
        just fetched stays even when it alone is larger: its caller needs it now. Leftover
        partial downloads of crashed processes go the same way (a live one is fresh)."""
        entries = []
        for path in self.cache_dir.glob("*/*"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # evicted by another process meanwhile
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        recent = time.time() - self.in_use_grace_s
        for mtime, size, path in sorted(entries):
            if total <= self.cache_bytes:
                break
            if path == keep or mtime > recent:
                continue
            path.unlink(missing_ok=True)
            total -= size


def _refuse_unless(actual: str, digest: str, where: str) -> None:
    if actual != digest:
        raise ObjectCorrupt(f"audio object {where} holds bytes whose sha256 is {actual}, not {digest}: refused")


class _VerifyingStream(io.RawIOBase):
    """The object's body, hashed as it is read; reading its end raises ObjectCorrupt if the
    bytes were not the digest's, so a download is cut short rather than served wrong."""

    def __init__(self, body, digest: str, where: str):
        self._body, self._digest, self._where = body, digest, where
        self._sha = hashlib.sha256()
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(len(buffer))
        if not data and not self._checked:
            self._checked = True
            _refuse_unless(self._sha.hexdigest(), self._digest, self._where)
        self._sha.update(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def main() -> None:
    """`python -m storage.s3_audio_store`: make the bucket AGR_AUDIO_STORE_URL names, once, at
    a deployment's first set-up (the store itself never creates one)."""

    store = S3AudioStore.from_settings(get_settings())
    store.ensure_bucket()
    print(f"s3://{store.bucket} is ready")


if __name__ == "__main__":
    main()
