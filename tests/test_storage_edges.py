"""Stored audio at the edges: store I/O never runs under a tenant's lock or before a commit.

- A submit puts its objects before it takes any lock: another tenant submitting the same
  bytes goes on while the first one's store is slow.
- A batch delete whose commit fails deletes no object; one whose store refuses the
  delete still succeeds, and the object goes once the store answers again.
- An object no row names (a submission refused after its put) is collected.
- Every pooled connection taken (uploads waiting on their tenant's lock): another
  tenant's request is answered 503 with Retry-After, never 500.
- A store that hangs for the sweeper (its requests answered an hour late) delays the
  object deletions, never the recovery of a step whose worker was killed.
"""

import errno
import hashlib
import json
import os
import threading
import time

import httpx
import pytest
from sqlalchemy import select, text

from api.intake.batch_input import Item
from api.intake.submission import BatchRequest, create_batch
from api.keys import caller_for, create_key
from models import AudioAsset, AudioDeletion, Batch, BatchStatus, Job, Step
from models.db import session_scope
from models.tenant import lock_tenant
from storage.factory import audio_store
from tests.latency_proxy import LatencyProxy
from tests.stack import api_client, tone_wav
from workers.runtime import object_deletions
from workers.runtime.retention import delete_batch


def _tenant(name: str):
    return caller_for(create_key(f"{name}-{os.urandom(4).hex()}")).tenant_id


def _submit(tenant_id, clip, name: str = "b"):
    return create_batch(BatchRequest(name, [Item("q0", clip, "What is heard?", ["A tone", "A voice"], None)],
                                     {"max_iters": 0}, tenant_id=tenant_id))[0]


def _digest_of(batch_id) -> str:
    with session_scope() as session:
        return session.scalar(select(AudioAsset.sha256).join(Job, Job.audio_id == AudioAsset.id)
                              .where(Job.batch_id == batch_id))


def _delete(batch_id, tenant_id) -> int:
    with session_scope() as session:
        lock_tenant(session, tenant_id)
        batch = session.get(Batch, batch_id)
        batch.status = BatchStatus.COMPLETED
        return delete_batch(session, batch)


def _asset(digest: str) -> bool:
    with session_scope() as session:
        return session.scalar(select(AudioAsset.id).where(AudioAsset.sha256 == digest)) is not None


def test_a_submit_puts_its_objects_before_it_locks_anything(stack, tmp_path, monkeypatch):
    """Tenant A's store hangs in its put; tenant B submits the same bytes meanwhile and is
    not held behind A (before: A held the bytes' asset row through its put, and B waited)."""
    first, second = _tenant("a"), _tenant("b")
    clip = tone_wav(tmp_path / "clip.wav")
    (tmp_path / "b").mkdir()
    same = tmp_path / "b" / "clip.wav"
    same.write_bytes(clip.read_bytes())
    store, real_put, in_put, go_on = audio_store(), audio_store().put, threading.Event(), threading.Event()

    def slow_put(digest, staged):
        if threading.current_thread().name == "tenant-a":
            in_put.set()
            go_on.wait(120)
        real_put(digest, staged)

    monkeypatch.setattr(store, "put", slow_put)
    a = threading.Thread(target=_submit, args=(first, clip), name="tenant-a")
    a.start()
    try:
        assert in_put.wait(60)
        b_done = threading.Event()
        b = threading.Thread(target=lambda: (_submit(second, same), b_done.set()), name="tenant-b")
        b.start()
        b.join(60)
        assert b_done.is_set(), "tenant B waited on tenant A's slow store"
    finally:
        go_on.set()
        a.join(60)



def test_a_submissions_puts_run_side_by_side_and_one_failing_fails_it_whole(stack, tmp_path, monkeypatch):
    """40 clips: their puts overlap (four at once are waited for: one at a time, as before,
    that wait would fail); one put refused fails the submission with no batch and nothing
    left in staging; sent again, it succeeds."""
    tenant = _tenant("many")
    clips = [tone_wav(tmp_path / f"c{i}.wav", freq=300 + 10 * i) for i in range(40)]
    request = BatchRequest("many", [Item(f"q{i}", c, "What is heard?", ["A tone", "A voice"], None)
                                    for i, c in enumerate(clips)], {"max_iters": 0}, tenant_id=tenant)
    store, real_put = audio_store(), audio_store().put
    four_at_once, refused = threading.Barrier(4, timeout=60), [hashlib.sha256(clips[25].read_bytes()).hexdigest()]
    arrivals, counting = [0], threading.Lock()

    def put(digest, staged):
        with counting:
            arrivals[0] += 1
            among_first_four = arrivals[0] <= 4
        if among_first_four:
            four_at_once.wait()  # BrokenBarrierError after 60 s when puts run one at a time
        if digest in refused:
            raise OSError(errno.EIO, "the store refused the put")
        real_put(digest, staged)

    monkeypatch.setattr(store, "put", put)
    staging = set(store.staging_dir().iterdir())
    with pytest.raises(OSError, match="refused the put"):
        create_batch(request)
    assert set(store.staging_dir().iterdir()) <= staging, "staged copies were left behind"
    with session_scope() as session:
        assert session.scalar(select(Batch.id).where(Batch.tenant_id == tenant)) is None
    refused.clear()
    batch_id = create_batch(request)[0]
    assert len(stack.jobs(batch_id)) == 40

def test_a_failed_commit_deletes_no_object_and_a_failed_store_delete_is_worked_off_later(
        stack, tmp_path, monkeypatch):
    tenant = _tenant("del")
    batch_id = _submit(tenant, tone_wav(tmp_path / "one.wav"))
    digest = _digest_of(batch_id)
    # The commit fails (a deferred check refusing it, as a failover or a full disk would).
    with session_scope() as session:
        session.execute(text("CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$ BEGIN RAISE EXCEPTION 'commit refused'; END $$"))
        session.execute(text("CREATE CONSTRAINT TRIGGER refuse_commit AFTER DELETE ON audio_assets DEFERRABLE "
                             "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"))
    try:
        try:
            _delete(batch_id, tenant)
            raise AssertionError("the commit went through")
        except Exception as exc:
            assert "commit refused" in str(exc)
    finally:
        with session_scope() as session:
            session.execute(text("DROP TRIGGER refuse_commit ON audio_assets"))
            session.execute(text("DROP FUNCTION refuse_commit()"))
    assert _asset(digest) and audio_store().exists(digest)  # before: the row named an object gone

    # The store refuses deletes: the batch delete succeeds all the same, the object waits.
    store, real_delete = audio_store(), audio_store().delete

    def refused(digest):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store, "delete", refused)
    assert _delete(batch_id, tenant) == 1
    assert object_deletions.work_off() == 0
    assert not _asset(digest) and audio_store().exists(digest)  # no row names it; it is still there
    monkeypatch.setattr(store, "delete", real_delete)
    assert object_deletions.work_off() == 1
    assert not audio_store().exists(digest)
    with session_scope() as session:
        assert session.get(AudioDeletion, digest).done_at is not None


def test_an_object_no_row_names_is_collected(stack, tmp_path, monkeypatch):
    from api.intake.audio_ingest import put_staged, stage_path
    from core.settings import get_settings

    monkeypatch.setenv("AGR_ORPHAN_GRACE_S", "3600")
    get_settings.cache_clear()
    try:
        kept = _digest_of(_submit(_tenant("kept"), tone_wav(tmp_path / "kept.wav")))
        orphan = stage_path(tone_wav(tmp_path / "orphan.wav"))  # put, then its submission refused
        young = stage_path(tone_wav(tmp_path / "young.wav"))
        put_staged([orphan, young])
        old = time.time() - 7200
        for digest in (orphan.sha256, kept):
            os.utime(audio_store().local_file(digest), (old, old))
        assert object_deletions.collect_orphans() == 1
        assert object_deletions.work_off() == 1
        assert not audio_store().exists(orphan.sha256)
        assert audio_store().exists(kept) and audio_store().exists(young.sha256)  # named; too young
    finally:
        get_settings.cache_clear()


def test_a_pool_taken_by_uploads_waiting_on_their_tenants_lock_answers_503(stack, tmp_path):
    stack.configure(db_pool_size=1, db_pool_overflow=0, db_pool_timeout_s=1)
    url = stack.start_api()
    a_key, b_key = create_key(f"pool-a-{os.urandom(4).hex()}"), create_key(f"pool-b-{os.urandom(4).hex()}")
    clip = tone_wav(tmp_path / "clip.wav").read_bytes()
    with session_scope() as session:  # tenant A's lock, held as a long submit of A's would
        lock_tenant(session, caller_for(a_key).tenant_id)
        uploading = threading.Thread(target=lambda: api_client(url, a_key).post(
            "/v1/audio", files={"file": ("clip.wav", clip)}))
        uploading.start()
        deadline = time.monotonic() + 60
        while (answer := api_client(url, b_key).get("/v1/batches")).status_code == 200:
            assert time.monotonic() < deadline, "the upload never took the pool's connection"
            time.sleep(0.2)
    uploading.join(60)
    assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text  # before: 500
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert api_client(url, b_key).get("/v1/batches").status_code == 200  # the lock gone, all is well


def test_a_sweeper_whose_store_hangs_still_takes_back_a_killed_workers_step(stack, scripted_llm, s3_server, tmp_path):
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]')
    stack.env.update(s3_server.env(f"hang-{os.urandom(4).hex()}"))
    port = int(s3_server.endpoint_url.rsplit(":", 1)[1])
    with session_scope() as session:
        object_deletions.request_deletions(session, [os.urandom(32).hex()])  # work for the store
    with LatencyProxy(port, 3600.0) as hung:
        url = stack.start_api()
        stack.start_role("perception-cpu")
        stack.start_role("reasoning")
        stack.start_role("sweeper", s3_endpoint_url=hung.url)  # only the sweeper's store hangs
        scripted_llm.delays["planner"] = 3.0
        with api_client(url, create_key(f"hang-{os.urandom(4).hex()}")) as client:
            upload = client.post("/v1/audio", files={"file": ("t.wav", tone_wav(tmp_path / "t.wav").read_bytes())})
            line = {"custom_id": "q0", "audio": {"upload_id": upload.json()["id"]}, "question": "What is heard?",
                    "choices": ["A tone", "A voice"]}
            created = client.post("/v1/batches", json={"input": json.dumps(line)})
        assert created.status_code == 201, created.text
        batch_id = created.json()["id"]
        stack.wait_for_running_step("plan", batch_id)
        deadline = time.monotonic() + 60
        while not scripted_llm.requests_of("planner") and time.monotonic() < deadline:
            time.sleep(0.02)
        stack.kill("reasoning")  # the plan step's lease lapses: only the sweeper takes it back
        scripted_llm.delays["planner"] = 0.0
        stack.start_role("reasoning")
        stack.wait_for_batch(batch_id, timeout=120)  # before: the sweeper sat in the store's delete
    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    with session_scope() as session:
        plan = session.scalar(select(Step).where(Step.job_id == job.id, Step.kind == "plan"))
        assert plan.attempts == 2 and "never finished" in plan.last_error
