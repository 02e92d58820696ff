"""Two tenants with separate audio roots, on the running stack (API process, Celery workers
per queue, the sweeper, a scripted reasoner): what each submits is copied into the
service's store at submit and read only from there, so neither can see, plant in or break
the other's audio, and a tenant's own files changing later changes nothing."""

import hashlib
import json
import os
import shutil
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from api.keys import caller_for, create_key
from models import AudioAsset, AudioGrant, Job, Tenant, ToolCall, Upload
from models.db import session_scope
from storage.factory import audio_store
from tests.stack import api_client, tone_wav
from workers.method.perception.executor import cache_key
from workers.runtime.object_deletions import work_off
from workers.runtime.retention import expire_uploads

QUICK_COARSE_TOOLS = '["signal_facts", "voice_activity"]'


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lines(*audio: str) -> str:
    return "\n".join(json.dumps({"custom_id": f"q{i}", "audio": a, "question": "What is heard?",
                                 "choices": ["A tone", "A voice"]}) for i, a in enumerate(audio))


def _submit(client, *audio: str):
    return client.post("/v1/batches", json={"input": _lines(*audio), "max_iters": 0})


def _finished(client, batch_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (batch := client.get(f"/v1/batches/{batch_id}").json())["status"] == "in_progress":
        assert time.monotonic() < deadline, f"batch {batch_id} did not finish: {batch}"
        time.sleep(0.5)
    return batch


def _jobs(client, batch_id: str) -> dict[str, dict]:
    return {j["custom_id"]: j for j in client.get(f"/v1/batches/{batch_id}/jobs").json()["data"]}


@pytest.fixture
def two_tenants(stack, scripted_llm, tmp_path):
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools=QUICK_COARSE_TOOLS)
    stack.start()
    url = stack.start_api()
    roots = {name: tmp_path / f"root-{name}" for name in "ab"}
    clients = {}
    for name, root in roots.items():
        root.mkdir()
        clients[name] = api_client(url, create_key(f"{name}-{os.urandom(4).hex()}", audio_root=root,
                                                   rate_limit_per_minute=100_000))
    yield roots, clients, url
    for client in clients.values():
        client.close()


def test_tenants_share_bytes_not_files_and_later_changes_to_files_change_nothing(two_tenants, tmp_path):
    roots, clients, url = two_tenants
    a, b = clients["a"], clients["b"]
    clip = tone_wav(roots["a"] / "clip.wav")
    shutil.copy(clip, roots["b"] / "clip.wav")  # the same bytes, each in its own root
    (roots["a"] / "sub").mkdir()
    moved = tone_wav(roots["a"] / "sub" / "moved.wav", freq=330)
    rewritten = tone_wav(roots["a"] / "rewritten.wav", freq=550)
    submitted = {p.name: (_sha(p), p.read_bytes()) for p in (clip, moved, rewritten)}

    created_a = _submit(a, "clip.wav", "sub/moved.wav", "rewritten.wav")
    created_b = _submit(b, "clip.wav")
    assert created_a.status_code == created_b.status_code == 201, created_a.text + created_b.text
    # Right after submit, A's files change under the service: a folder swapped for a link
    # out of the root (to a look-alike file with other bytes), and a file rewritten.
    outside = tmp_path / "outside"
    outside.mkdir()
    tone_wav(outside / "moved.wav", freq=880)
    (roots["a"] / "sub").rename(roots["a"] / "sub.orig")
    os.symlink(outside, roots["a"] / "sub")
    tone_wav(rewritten, freq=990)

    batch_a, batch_b = created_a.json()["id"], created_b.json()["id"]
    assert _finished(a, batch_a)["request_counts"]["completed"] == 3
    assert _finished(b, batch_b)["request_counts"]["completed"] == 1
    jobs_a, jobs_b = _jobs(a, batch_a), _jobs(b, batch_b)

    with session_scope() as session:
        # One stored object for the shared bytes, readable by both tenants, no path kept.
        assets = session.scalars(select(AudioAsset).where(AudioAsset.sha256 == submitted["clip.wav"][0])).all()
        assert len(assets) == 1 and assets[0].legacy_path is None
        grants = session.scalars(select(AudioGrant.tenant_id).where(AudioGrant.audio_id == assets[0].id)).all()
        assert len(grants) == 2
        # Perception ran on the submitted bytes: every cached result is keyed by their hash.
        for custom_id, name in (("q1", "moved.wav"), ("q2", "rewritten.wav")):
            job = session.get(Job, jobs_a[custom_id]["id"])
            assert job.audio.sha256 == submitted[name][0]
            calls = session.scalars(select(ToolCall).where(ToolCall.job_id == job.id)).all()
            tenant = job.batch.tenant_id
            assert calls and all(c.cache_key == cache_key(submitted[name][0], c.tool, c.model, c.args, tenant)
                                 for c in calls)
    # Downloads serve the stored copy, not what lies at the path now.
    for custom_id, name in (("q0", "clip.wav"), ("q1", "moved.wav"), ("q2", "rewritten.wav")):
        got = a.get(f"/v1/jobs/{jobs_a[custom_id]['id']}/audio")
        assert got.status_code == 200 and got.content == submitted[name][1], (name, got.status_code)
    # A path through the link out of the root is refused at submit, /etc included.
    os.symlink("/etc", roots["a"] / "etc")
    refused = _submit(a, "sub/moved.wav", "etc/passwd")
    assert refused.status_code == 422
    assert all("symbolic link" in e for e in refused.json()["detail"]["errors"]), refused.text

    # A deletes its file and its batch: B's job, download and resubmission are untouched.
    clip.unlink()
    deleted = a.delete(f"/v1/batches/{batch_a}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["audio_objects_deleted"] == 2  # moved and rewritten; the clip is still B's
    assert a.get(f"/v1/jobs/{jobs_a['q0']['id']}").status_code == 404
    job_b = jobs_b["q0"]
    got = b.get(f"/v1/jobs/{job_b['id']}/audio")
    assert got.status_code == 200 and got.content == submitted["clip.wav"][1]
    evidence = b.get(f"/v1/jobs/{job_b['id']}/evidence")
    assert evidence.status_code == 200 and b.get(f"/v1/jobs/{job_b['id']}").json()["status"] == "succeeded"
    for secret in (str(roots["a"]), str(roots["b"]), "rewritten", "moved", "batch_size"):
        assert secret not in evidence.text
    again = _submit(b, "clip.wav")
    assert again.status_code == 201, again.text
    assert _finished(b, again.json()["id"])["request_counts"]["completed"] == 1
    # The other tenant's job is not found, not forbidden.
    assert a.get(f"/v1/jobs/{job_b['id']}/audio").status_code == 404
    # The objects go after the delete's commit (workers/runtime/object_deletions.py), once it answered.
    for digest in (submitted["moved.wav"][0], submitted["rewritten.wav"][0]):
        _until(lambda digest=digest: not audio_store().exists(digest))
    assert audio_store().exists(submitted["clip.wav"][0])


def _until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


@pytest.fixture
def api_only(stack):
    """The API alone: what is tested here is refused or counted before any queue."""
    return stack.start_api()


def test_concurrent_submits_cannot_pass_the_cap_and_storage_is_quota_bound(api_only, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    tone_wav(root / "clip.wav")
    key = create_key(f"capped-{os.urandom(4).hex()}", audio_root=root, rate_limit_per_minute=100_000,
                     max_queued_items=5)
    statuses = []

    def submit_one():
        with api_client(api_only, key) as client:
            statuses.append(_submit(client, "clip.wav").status_code)

    threads = [threading.Thread(target=submit_one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 5 + [429] * 15, statuses

    # Storage: a quota of one clip's bytes admits that clip (again and again), not a second.
    first, second = tone_wav(tmp_path / "first.wav"), tone_wav(tmp_path / "second.wav")
    quota_key = create_key(f"quota-{os.urandom(4).hex()}", rate_limit_per_minute=100_000)
    with session_scope() as session:
        session.execute(update_tenant_quota(quota_key, first.stat().st_size))
    with api_client(api_only, quota_key) as client:
        def upload(path):
            with path.open("rb") as f:
                return client.post("/v1/audio", files={"file": (path.name, f, "audio/wav")})

        kept = upload(first)
        assert kept.status_code == 201 and upload(first).status_code == 201
        over = upload(second)
        assert over.status_code == 413 and "quota" in over.json()["detail"], over.text
    # Expiry: the uploads no job uses, once older than the retention, go with their object.
    with session_scope() as session:
        session.execute(update(Upload).where(Upload.audio_id == _asset_id(kept.json()["sha256"]))
                        .values(created_at=func.now() - timedelta(days=30)))
    expire_uploads()
    assert audio_store().exists(kept.json()["sha256"])  # released; deleted after the commit, by the sweeper:
    work_off()
    assert not audio_store().exists(kept.json()["sha256"])
    with api_client(api_only, quota_key) as client:
        assert client.get(f"/v1/audio/{kept.json()['id']}").status_code == 404


def update_tenant_quota(key: str, max_bytes: int):
    return update(Tenant).where(Tenant.id == caller_for(key).tenant_id).values(max_stored_bytes=max_bytes)


def _asset_id(digest: str) -> int:
    with session_scope() as session:
        return session.scalar(select(AudioAsset.id).where(AudioAsset.sha256 == digest))


def test_on_an_s3_store_a_perception_worker_needs_none_of_the_apis_files(stack, scripted_llm, s3_server, tmp_path):
    """The API and the perception worker share only the S3 endpoint: each has its own data
    folder, and the tenant's files and the API's staging are gone before perception runs."""
    prefix = f"e2e-{os.urandom(4).hex()}"
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools=QUICK_COARSE_TOOLS,
                    data_dir=str(tmp_path / "api-data"))
    stack.env.update(s3_server.env(prefix))
    url = stack.start_api()
    root = tmp_path / "root"
    root.mkdir()
    named, uploaded = tone_wav(root / "named.wav"), tone_wav(tmp_path / "uploaded.wav", freq=660)
    expected = {p.name: p.read_bytes() for p in (named, uploaded)}
    with api_client(url, create_key(f"s3-{os.urandom(4).hex()}", audio_root=root)) as client:
        with uploaded.open("rb") as f:
            upload = client.post("/v1/audio", files={"file": ("uploaded.wav", f, "audio/wav")}).json()
        lines = _lines("named.wav") + "\n" + json.dumps({"custom_id": "up", "audio": {"upload_id": upload["id"]},
                                                         "question": "What is heard?", "choices": ["A", "B"]})
        created = client.post("/v1/batches", json={"input": lines, "max_iters": 0})
        assert created.status_code == 201, created.text
        shutil.rmtree(root)
        uploaded.unlink()
        shutil.rmtree(tmp_path / "api-data")  # its staging: nothing of the audio is left on this side
        worker_data = tmp_path / "worker-data"
        stack.start_role("perception-cpu", data_dir=str(worker_data))
        stack.start_role("reasoning")
        stack.start_role("sweeper")
        batch_id = created.json()["id"]
        assert _finished(client, batch_id)["request_counts"]["completed"] == 2
        jobs = _jobs(client, batch_id)
        for custom_id, name in (("q0", "named.wav"), ("up", "uploaded.wav")):
            got = client.get(f"/v1/jobs/{jobs[custom_id]['id']}/audio")
            assert got.status_code == 200 and got.content == expected[name]
        bucket = s3_server.client()
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in expected.items()}
        for digest in digests.values():  # in the bucket, and in the worker's own verified copies
            bucket.head_object(Bucket=s3_server.bucket, Key=f"{prefix}/{digest[:2]}/{digest}")
            assert (worker_data / "audio-cache" / digest[:2] / digest).is_file()
        # Deleting the batch deletes the object only the batch used; the upload keeps its own.
        assert client.delete(f"/v1/batches/{batch_id}").json()["audio_objects_deleted"] == 1
        kept_key = f"{prefix}/{digests['uploaded.wav'][:2]}/{digests['uploaded.wav']}"
        _until(lambda: [o["Key"] for o in bucket.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)["Contents"]]
               == [kept_key])
