"""Fair scheduling across tenants (workers/runtime/fair_dispatch.py): a tenant's small batch is not
stuck behind another tenant's huge one. Each job here is two instant LLM steps (plan, then
answer), so under one FIFO per queue the small batch would finish after the whole of the big
one's planning (2,000 steps) and the big one's first answers."""

import time
import uuid

from sqlalchemy import select

from api.intake.submission import enqueue_first_steps
from models import Batch, Job, JobStatus, Tenant
from models.db import session_scope
from tests.stack import planning_steps
from workers.runtime.batch_lifecycle import cancel_batch, lock_for_ending

BIG, SMALL = 2000, 10
BIG_FINISHED_BY = 200  # the small batch must be done before the big one's 200th job


def _tenant(name: str) -> uuid.UUID:
    with session_scope() as session:
        tenant = Tenant(name=f"{name}-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        session.flush()
        return tenant.id


def _finished(batch_id) -> list:
    with session_scope() as session:
        return list(session.scalars(select(Job.finished_at).where(
            Job.batch_id == batch_id, Job.status.in_((JobStatus.SUCCEEDED, JobStatus.ERRORED)))))


def _wait_for_small_batch_or_big_lead(small, big, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(_finished(small)) < SMALL and len(_finished(big)) < BIG_FINISHED_BY:
        assert time.monotonic() < deadline, "neither the small batch nor the big one's lead finished"
        time.sleep(0.2)


def _cancel(batch_id) -> None:
    with session_scope() as session:
        batch = session.get(Batch, batch_id)
        lock_for_ending(session, batch)
        cancel_batch(session, batch)


def test_a_small_batch_finishes_before_another_tenants_huge_batch_gets_far(stack, scripted_llm, tmp_path):
    stack.configure(llm_base_url=scripted_llm.base_url, reasoning_concurrency=4)
    big, big_steps = planning_steps(tmp_path, "big", BIG, tenant_id=_tenant("big"))
    enqueue_first_steps(big_steps)  # as the API does after its commit
    small, small_steps = planning_steps(tmp_path, "small", SMALL, tenant_id=_tenant("small"))
    enqueue_first_steps(small_steps)
    stack.start("reasoning", "sweeper")

    _wait_for_small_batch_or_big_lead(small, big)
    small_done, big_done = _finished(small), _finished(big)
    _cancel(big)  # the rest of it is not needed
    order = sorted([(t, "small") for t in small_done] + [(t, "big") for t in big_done])
    positions = [i + 1 for i, (_, which) in enumerate(order) if which == "small"]
    print(f"the small batch's finish positions: {positions}; the big one had finished {len(big_done)}")
    assert len(small_done) == SMALL, f"the big batch finished {len(big_done)} first; the small one {positions}"
    assert len(big_done) < BIG_FINISHED_BY or max(small_done) < sorted(big_done)[BIG_FINISHED_BY - 1], positions
    with session_scope() as session:
        statuses = session.scalars(select(Job.status).where(Job.batch_id == small)).all()
    assert statuses == [JobStatus.SUCCEEDED] * SMALL, stack.logs()
