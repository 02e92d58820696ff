"""Holding a step's lease while it works, through database blips, and knowing when it is lost.

A claim (workers/runtime/step_claim.py) gives a step a lease; a background thread renews it every
AGR_STEP_LEASE_RENEW_S (a third of the lease by default). A renewal that fails because the
database is unreachable is retried with backoff, never given up: nobody can take the
step over while the database is down either, and a renewal that reaches it afterwards
keeps the lease if nobody did. A renewal that finds the fence no longer matching (the
sweeper re-queued the step, another execution claimed it) marks the lease lost for good.

Paid work (an LLM call, a model's forward pass) asks `confirm_lease()` first: it returns at
once while the lease is known held, raises LeaseLost once it is lost, and waits while it
is in doubt (no renewal has reached the database for most of a lease), so a step cut off
from the database starts nothing new that a second worker might be paying for too.
"""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import func, tuple_, update

from core.database_outage import FIRST_WAIT_S, database_unreachable, outage_reason
from core.settings import get_settings
from models import Step, StepStatus
from models.db import session_scope
from workers.method.paid_work import checked_by
from workers.runtime.step_claim import StepClaim

log = logging.getLogger(__name__)

RETRY_AT_MOST_S = 1.0  # between renewals that failed
DOUBT_AFTER = 0.8  # of a lease without a renewal reaching the database: it may be lapsing
CONFIRM_POLL_S = 0.1


class LeaseLost(RuntimeError):
    """This execution no longer owns its step: another one does, or will."""


class LeaseRenewal:
    """Renews the leases of `claims` in the background until stopped. Started and stopped
    explicitly where the work spans threads (workers/runtime/gpu_batch.py)."""

    def __init__(self, claims: list[StepClaim]):
        self.claims = list(claims)
        settings = get_settings()
        self.lease_s, self.interval_s = settings.step_lease_s, settings.lease_renew_interval_s
        self.tolerance_s = settings.database_outage_tolerance_s
        self._lost: set[int] = set()
        self._confirmed_at = time.monotonic()  # the claim itself set the lease just now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.claims[0].step_id}", daemon=True)

    def start(self) -> "LeaseRenewal":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def lost(self, claim: StepClaim) -> bool:
        return claim.step_id in self._lost

    def raise_if_lost(self, claim: StepClaim) -> None:
        """Raise LeaseLost if a renewal found `claim`'s lease taken over (never waits)."""
        if claim.step_id in self._lost:
            raise LeaseLost(f"step {claim.step_id} attempt {claim.attempt}: its lease was taken over")

    def confirm(self, claim: StepClaim) -> None:
        """Return while `claim`'s lease is known held; raise LeaseLost once it is not."""
        waited_since = time.monotonic()
        while True:
            self.raise_if_lost(claim)
            if time.monotonic() - self._confirmed_at < DOUBT_AFTER * self.lease_s:
                return
            if self._stop.is_set() or time.monotonic() - waited_since > self.tolerance_s:
                raise LeaseLost(f"step {claim.step_id} attempt {claim.attempt}: its lease could not be "
                                f"renewed for {time.monotonic() - self._confirmed_at:.0f} s")
            time.sleep(CONFIRM_POLL_S)

    def _renew(self) -> None:
        wait, failures = self.interval_s, 0
        while not self._stop.wait(wait):
            live = [c for c in self.claims if c.step_id not in self._lost]
            if not live:
                return
            asked_at = time.monotonic()  # the lease runs from no earlier than this
            try:
                held = self._renew_once(live)
            except Exception as exc:
                if failures == 0:
                    log.warning("lease renewal of %d step(s) failed%s; retrying with backoff: %s", len(live),
                                " (database unreachable)" if database_unreachable(exc) else "", outage_reason(exc))
                failures += 1
                # Soon after the database is back, whatever the interval: the sweeper takes
                # back leases that lapsed in the outage unless their workers renew them.
                wait = min(self.interval_s, RETRY_AT_MOST_S, FIRST_WAIT_S * 2 ** min(failures, 10))
                continue
            if failures:
                log.warning("lease renewal reached the database again after %d failed tries", failures)
            wait, failures = self.interval_s, 0
            self._confirmed_at = asked_at
            # Not renewed: taken over, or settled by this execution a moment ago (its commit
            # ends the lease too). Said where it matters: where the work stops (LeaseLost).
            self._lost.update(c.step_id for c in live if c.step_id not in held)

    def _renew_once(self, live: list[StepClaim]) -> set[int]:
        with session_scope() as session:
            return set(session.scalars(
                update(Step)
                .where(tuple_(Step.id, Step.attempts).in_([(c.step_id, c.attempt) for c in live]),
                       Step.status == StepStatus.RUNNING)
                .values(lease_expires_at=func.now() + timedelta(seconds=self.lease_s))
                .returning(Step.id)
            ))


@contextmanager
def lease_heartbeat(claim: StepClaim) -> Iterator[LeaseRenewal]:
    """The claim's lease renewed for the duration of the block, and confirmed before any
    paid work inside it (workers/method/paid_work.py): raises LeaseLost if it was lost
    (waits while that is in doubt)."""
    renewal = LeaseRenewal([claim]).start()
    try:
        with checked_by(lambda: renewal.confirm(claim)):
            yield renewal
    finally:
        renewal.stop()
