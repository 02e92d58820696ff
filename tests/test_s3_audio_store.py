"""The S3 back-end of the audio store against a real S3 server (SeaweedFS, tests/s3_server.py):
objects round-trip by digest, a put is idempotent, missing objects say so, a corrupted
object never reaches a decoder, and the local cache stays under its size."""

import hashlib
import os
import subprocess
import sys
import uuid

import pytest
from botocore.exceptions import ClientError

from core.settings import Settings
from storage.audio_store import ObjectMissing
from storage.factory import store_from
from storage.s3_audio_store import ObjectCorrupt, S3AudioStore, client_from_settings


def _settings(server, tmp_path, **overrides) -> Settings:
    env = server.env(prefix=f"t-{uuid.uuid4().hex[:8]}")  # each test its own keys
    values = {"audio_store_url": env["AGR_AUDIO_STORE_URL"], "s3_endpoint_url": server.endpoint_url,
              "s3_access_key_id": server.access_key_id, "s3_secret_access_key": server.secret_access_key,
              "data_dir": tmp_path / "data"}
    return Settings(**(values | overrides))


@pytest.fixture
def store(s3_server, tmp_path) -> S3AudioStore:
    return store_from(_settings(s3_server, tmp_path))


def _staged(tmp_path, data: bytes) -> tuple[str, object]:
    path = tmp_path / f"staged-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), path


def _cached(store: S3AudioStore) -> set[str]:
    return {p.name for p in store.cache_dir.glob("*/*")}


def test_round_trip(store, s3_server, tmp_path):
    data = os.urandom(200_000)
    digest, staged = _staged(tmp_path, data)
    assert not store.exists(digest)
    store.put(digest, staged)
    assert not staged.exists(), "the staged file is consumed"
    assert store.exists(digest)
    # Keyed <prefix>/<2 hex>/<digest> in the bucket, as the module says.
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=f"{store.prefix}/{digest[:2]}/{digest}")
    assert head["ContentLength"] == len(data)

    with store.open(digest) as stream:
        assert stream.read() == data
    path = store.local_file(digest)
    assert path.read_bytes() == data
    assert path.is_relative_to(tmp_path / "data" / "audio-cache")  # the default cache folder

    store.delete(digest)
    store.delete(digest)  # idempotent
    assert not store.exists(digest)
    assert not path.exists(), "this machine's copy goes with the object"
    with pytest.raises(ObjectMissing):
        store.open(digest)
    with pytest.raises(ObjectMissing):
        store.local_file(digest)


def test_put_is_idempotent(store, s3_server, tmp_path):
    data = os.urandom(50_000)
    digest, staged = _staged(tmp_path, data)
    store.put(digest, staged)
    key = store.key(digest)
    first = s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)
    _, again = _staged(tmp_path, data)
    store.put(digest, again)
    assert not again.exists()
    second = s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)
    assert (second["ETag"], second["LastModified"]) == (first["ETag"], first["LastModified"]), "not re-uploaded"


def test_big_file_goes_multipart(store, s3_server, tmp_path):
    data = os.urandom(9 * 1024 * 1024)  # over boto3's 8 MiB multipart threshold
    digest, staged = _staged(tmp_path, data)
    store.put(digest, staged)
    etag = s3_server.client().head_object(Bucket=s3_server.bucket, Key=store.key(digest))["ETag"]
    assert "-" in etag, f"a multipart upload's ETag is <md5 of parts>-<count>, not {etag}"
    assert hashlib.sha256(store.local_file(digest).read_bytes()).hexdigest() == digest


def test_a_corrupted_object_is_refused(store, s3_server, tmp_path):
    digest, staged = _staged(tmp_path, os.urandom(30_000))
    store.put(digest, staged)
    # Someone with bucket access rewrites the object behind the service's back.
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=store.key(digest), Body=b"other bytes")

    with pytest.raises(ObjectCorrupt, match=digest):
        store.local_file(digest)
    assert list(store.cache_dir.rglob("*")) == [store.cache_dir / digest[:2]], "no copy, no partial left"
    with pytest.raises(ObjectCorrupt), store.open(digest) as stream:
        stream.read()


def test_cache_keeps_the_recently_used_within_its_size(s3_server, tmp_path):
    size = 10_000
    store = store_from(_settings(s3_server, tmp_path, audio_cache_bytes=int(size * 2.5)))
    store.in_use_grace_s = 0  # no other process here holds a path it was handed
    a, b, c = (_put(store, tmp_path, size) for _ in range(3))

    for n, digest in enumerate((a, b)):
        path = store.local_file(digest)
        os.utime(path, (1_000 + n, 1_000 + n))  # a used before b, without relying on clocks
    store.local_file(a)  # a reused: now the most recent, and not downloaded again
    store.local_file(c)  # three copies do not fit: the least recently used goes
    assert _cached(store) == {a, c}

    store.cache_bytes = 1  # a copy larger than the whole cache is still handed over
    assert store.local_file(b).read_bytes() == store.open(b).read()
    assert _cached(store) == {b}


def test_a_reused_copy_is_not_fetched_again(store, s3_server, tmp_path):
    digest = _put(store, tmp_path, 1_000)
    path = store.local_file(digest)
    s3_server.client().delete_object(Bucket=s3_server.bucket, Key=store.key(digest))
    assert store.local_file(digest) == path  # served from the cache, no request needed


def _put(store: S3AudioStore, tmp_path, size: int) -> str:
    digest, staged = _staged(tmp_path, os.urandom(size))
    store.put(digest, staged)
    return digest


def test_wrong_credentials_are_refused(s3_server, tmp_path):
    store = store_from(_settings(s3_server, tmp_path, s3_secret_access_key="not-the-secret"))
    with pytest.raises(ClientError) as refused:
        store.exists("0" * 64)
    assert refused.value.response["Error"]["Code"] in {"SignatureDoesNotMatch", "403", "AccessDenied"}


def test_the_operator_command_makes_the_bucket_from_the_environment(s3_server, tmp_path):
    # The same AGR_* variables a worker process of the stack would be given.
    bucket = f"agr-{uuid.uuid4().hex[:12]}"
    env = os.environ | s3_server.env() | {"AGR_AUDIO_STORE_URL": f"s3://{bucket}", "AGR_DATA_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "storage.s3_audio_store"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]

    settings = _settings(s3_server, tmp_path, audio_store_url=f"s3://{bucket}")
    store = S3AudioStore.from_settings(settings)
    assert (store.bucket, store.prefix) == (bucket, "")
    store.ensure_bucket()  # exists already: nothing to do
    digest = _put(store, tmp_path, 100)
    assert store.key(digest) == f"{digest[:2]}/{digest}"  # no prefix, no leading slash
    assert client_from_settings(settings).head_object(Bucket=bucket, Key=store.key(digest))


def test_names_are_digests_only(store):
    with pytest.raises(ValueError):
        store.exists("../../etc/passwd")
