"""The intake that checks `validating` batches (api/intake/batch_intake.py), driven from the test
process against the real Postgres, with no API running so no other intake takes the
batch: a cancel while a check runs is answered at once and the check's result dropped; a
batch whose checks keep dying fails after a few instead of blocking the intake; an upload
that retention deletes while its batch is checked fails the batch instead of queueing
jobs with no audio."""

import errno
import json
import os
import threading
import time
from uuid import UUID

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import delete, select, text
from sqlalchemy.exc import OperationalError

from api.intake import batch_intake
from api.intake.batch_intake import Submission, record_for_intake, validate_next
from api.keys import caller_for, create_key
from models import Batch, BatchStatus, InputFile, Job, Upload
from models.db import session_scope
from tests.stack import api_client, tone_wav
from workers.runtime.batch_lifecycle import cancel_batch, lock_for_ending
from workers.runtime.retention import release_audio

SUBMISSION = Submission("jsonl", None, None, "agr", 0, {}, None)


@pytest.fixture
def tenant(stack, tmp_path):
    stack.configure(data_dir=str(tmp_path / "data"))
    return caller_for(create_key(f"intake-{os.urandom(4).hex()}"))


def validating_batch(caller, upload_ids: list[UUID]) -> UUID:
    lines = [json.dumps({"custom_id": f"q{i}", "audio": {"upload_id": str(u)}, "question": "What is heard?",
                         "choices": ["A tone", "A voice"]}) for i, u in enumerate(upload_ids)]
    content = "\n".join(lines) + "\n"
    with session_scope() as session:
        row = InputFile(tenant_id=caller.tenant_id, purpose="batch", filename="in.jsonl", sha256=os.urandom(32).hex(),
                        bytes=len(content), content=content)
        session.add(row)
        session.flush()
        return record_for_intake(session, caller, row.id, SUBMISSION, None, "x" * 64).id


def uploads(stack, caller, tmp_path, count: int) -> list[UUID]:
    url = stack.start_api()  # only to upload: stopped before the intake under test runs
    key = create_key(caller.tenant_name)
    clips = [tone_wav(tmp_path / f"u{i}.wav", seconds=0.2, freq=300 + i) for i in range(count)]
    sent = api_client(url, key).post("/v1/audio/bulk", files=[("file", (c.name, c.read_bytes())) for c in clips])
    assert sent.status_code == 201, sent.text
    stack.stop_all()
    return [UUID(u["id"]) for u in sent.json()["data"]]


def check_until(batch_id: UUID) -> None:
    """Run the intake until it has checked this batch (an earlier test may have left others)."""
    for _ in range(100):
        if validate_next() == batch_id:
            return
    raise AssertionError(f"the intake never took batch {batch_id}")


def batch_row(batch_id: UUID) -> Batch:
    with session_scope() as session:
        return session.get(Batch, batch_id)


def jobs_of(batch_id: UUID) -> int:
    with session_scope() as session:
        return len(session.scalars(select(Job.id).where(Job.batch_id == batch_id)).all())


def test_a_cancel_while_the_batch_is_checked_is_answered_at_once_and_the_check_dropped(stack, tenant, tmp_path,
                                                                                       monkeypatch):
    batch_id = validating_batch(tenant, uploads(stack, tenant, tmp_path, 2))
    checking, go_on = threading.Event(), threading.Event()
    real_prepare = batch_intake.prepare

    def slow_prepare(caller, *args):  # a check of 50,000 files takes minutes; this one until told
        prepared = real_prepare(caller, *args)
        if caller.tenant_id == tenant.tenant_id:
            checking.set()
            go_on.wait(60)
        return prepared

    monkeypatch.setattr(batch_intake, "prepare", slow_prepare)
    intake = threading.Thread(target=check_until, args=(batch_id,))
    intake.start()
    try:
        assert checking.wait(60)
        with session_scope() as session:  # what POST /v1/batches/{id}/cancel does
            session.execute(text("SET LOCAL lock_timeout = '5s'"))  # held by the check: it fails here
            batch = session.get(Batch, batch_id)
            lock_for_ending(session, batch)
            cancel_batch(session, batch)
    finally:
        go_on.set()
        intake.join(60)
    assert batch_row(batch_id).status == BatchStatus.CANCELLED
    assert jobs_of(batch_id) == 0  # the check finished after the cancel, and wrote nothing


def test_a_batch_whose_checks_keep_failing_is_refused_after_three(stack, tenant, tmp_path, monkeypatch):
    batch_id = validating_batch(tenant, uploads(stack, tenant, tmp_path, 1))

    def broken_prepare(caller, *args):
        raise RuntimeError("staging disk full")

    monkeypatch.setattr(batch_intake, "prepare", broken_prepare)
    for attempt in range(3):
        with pytest.raises(RuntimeError):
            check_until(batch_id)
        assert batch_row(batch_id).status == BatchStatus.VALIDATING  # given back at once, tried again
    check_until(batch_id)
    refused = batch_row(batch_id)
    assert refused.status == BatchStatus.FAILED
    assert refused.errors == ["the submission could not be checked (3 attempts; last: RuntimeError: "
                              "staging disk full)"], refused.errors


def test_an_upload_deleted_while_its_batch_is_checked_fails_the_batch(stack, tenant, tmp_path, monkeypatch):
    upload_ids = uploads(stack, tenant, tmp_path, 2)
    batch_id = validating_batch(tenant, upload_ids)
    real_prepare = batch_intake.prepare

    def prepare_then_expire(caller, *args):
        prepared = real_prepare(caller, *args)
        if caller.tenant_id == tenant.tenant_id:  # retention, between the look-up and the write
            with session_scope() as session:
                audio_id = session.scalar(select(Upload.audio_id).where(Upload.id == upload_ids[1]))
                session.execute(delete(Upload).where(Upload.id == upload_ids[1]))
                assert release_audio(session, tenant.tenant_id, {audio_id}) == 1
        return prepared

    monkeypatch.setattr(batch_intake, "prepare", prepare_then_expire)
    check_until(batch_id)
    refused = batch_row(batch_id)
    assert refused.status == BatchStatus.FAILED, refused.status
    assert "expired while the submission was checked" in refused.errors[0] and "u1.wav" in refused.errors[0]
    assert jobs_of(batch_id) == 0


def test_a_small_batch_of_one_tenant_is_checked_before_another_tenants_second_large_one(stack, tenant, tmp_path):
    """Tenant A's two batches are waiting when tenant B's arrives: B's is checked second,
    not behind A's every batch (20 batches of 50,000 files held B's 10 lines for an hour)."""
    other = caller_for(create_key(f"intake-b-{os.urandom(4).hex()}"))
    (tmp_path / "b").mkdir()
    (a_upload,), (b_upload,) = uploads(stack, tenant, tmp_path, 1), uploads(stack, other, tmp_path / "b", 1)
    first_a, second_a = validating_batch(tenant, [a_upload] * 3), validating_batch(tenant, [a_upload] * 3)
    b = validating_batch(other, [b_upload])
    order = []
    while len(order) < 3:
        checked = validate_next()
        assert checked is not None, order
        order += [checked] if checked in (first_a, second_a, b) else []
    assert order == [first_a, b, second_a]
    assert all(batch_row(batch_id).status == BatchStatus.IN_PROGRESS for batch_id in order)


def test_transient_errors_while_checking_are_retried_without_spending_an_attempt(stack, tenant, tmp_path,
                                                                                monkeypatch):
    """Three blips in a row (a full staging disk, a database connection dropped, an object
    store's 503) while a batch is checked: each is waited out with backoff, and the batch
    is queued after them (it failed for good after three before)."""
    batch_id = validating_batch(tenant, uploads(stack, tenant, tmp_path, 1))
    real_prepare = batch_intake.prepare
    blips = [OSError(errno.ENOSPC, "No space left on device"),
             OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")),
             ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                          "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")]

    def blipping_prepare(caller, *args):
        if caller.tenant_id == tenant.tenant_id and blips:
            raise blips.pop(0)
        return real_prepare(caller, *args)

    monkeypatch.setattr(batch_intake, "prepare", blipping_prepare)
    deadline = time.monotonic() + 60
    while batch_row(batch_id).status == BatchStatus.VALIDATING:
        assert time.monotonic() < deadline, batch_row(batch_id).intake
        try:
            validate_next()
        except Exception:  # the intake loop logs it and goes on
            pass
        time.sleep(0.1)
    checked = batch_row(batch_id)
    assert not blips and checked.status == BatchStatus.IN_PROGRESS, (checked.status, checked.errors)
    assert checked.intake_attempts == 1 and jobs_of(batch_id) == 1
