"""The sweeper's process: `python -m workers.runtime.sweeper_loop`.

A loop of its own, not a Celery task: a sweep queued behind thousands of LLM steps would
wait behind them, and the sweep is what recovers lost work. Exactly one sweeper works at
a time across the cluster: each process takes a Postgres advisory lock on a connection it
keeps open, and only its holder sweeps; the others stand by and take over when its
connection drops (a crashed sweeper, a database restart). Running two (a rolling
deploy) is therefore safe.

Upload expiry and stored objects' deletion run in a thread of their own
(`StoreHousekeeping`): a store that answers late must not hold back the sweep.

It touches `ALIVE_FILE` after every pass (or check, standing by), for a health check.
"""

import logging
import threading
import time
from pathlib import Path

from sqlalchemy import select, text

from core.database_outage import database_unreachable, outage_reason
from core.settings import get_settings
from models.db import get_engine
from workers.runtime import object_deletions, retention
from workers.runtime.sweeper import Sweeper

log = logging.getLogger("workers.runtime.sweeper_loop")

LOCK_ID = 0x61677273776570  # any fixed 64-bit number: "agrswep"
ALIVE_FILE = Path("/tmp/agr-sweeper-alive")


class ClusterLock:
    """The session-level advisory lock on a connection of its own: held while that
    connection lives, released by Postgres the moment it drops."""

    def __init__(self):
        self._connection = None
        self.unreachable = False  # said once per outage, not every second

    def held(self) -> bool:
        """Whether this process holds the lock now, taking it if it is free."""
        try:
            held = self._check() if self._connection is not None else self._take()
        except Exception as exc:
            if not self.unreachable:
                log.warning("sweeper: the database is unreachable (the lock goes with its connection): %s",
                            outage_reason(exc))
                self.unreachable = True
            self._drop()
            return False
        if self.unreachable:
            log.warning("sweeper: the database is reachable again")
            self.unreachable = False
        return held

    def _take(self) -> bool:
        self._connection = get_engine().connect()
        taken = self._connection.scalar(select(text(f"pg_try_advisory_lock({LOCK_ID})")))
        self._connection.commit()
        if not taken:
            self._drop()
            return False
        log.warning("sweeper: holding the cluster's sweeper lock; sweeping every %.1f s",
                    get_settings().sweep_interval_s)
        return True

    def _check(self) -> bool:
        self._connection.scalar(select(text("1")))  # still connected, so still held
        self._connection.commit()
        return True

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:
                pass
            self._connection = None


def run_forever() -> None:
    interval = get_settings().sweep_interval_s
    lock, sweeper, housekeeping = ClusterLock(), Sweeper(), StoreHousekeeping(interval)
    standing_by = False
    while True:
        started = time.monotonic()
        if lock.held():
            standing_by = False
            housekeeping.holding.set()
            try:
                sweeper.sweep()
                ALIVE_FILE.touch()
            except Exception as exc:
                sweeper.database_was_unreachable |= database_unreachable(exc)
                log.exception("sweeper: pass failed; trying again in %.1f s", interval)
        else:
            housekeeping.holding.clear()
            if lock.unreachable:
                sweeper.database_was_unreachable = True
            else:
                if not standing_by:
                    log.warning("sweeper: another sweeper holds the lock; standing by")
                standing_by = True
                ALIVE_FILE.touch()  # standing by is healthy too
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


class StoreHousekeeping:
    """Upload expiry and stored objects' deletion, in a thread of the sweeper's own, run
    while its process holds the cluster's lock. Apart from the sweep because store I/O
    can take minutes (an S3 that answers late or not at all, a listing of millions of
    objects): in the sweep's loop it held back the recovery of lost steps that long. Two
    such threads overlapping at a handover do no harm: each deletion is worked off under
    its row's lock, each tenant's expiry under the tenant's."""

    def __init__(self, interval: float):
        self.holding = threading.Event()
        self._interval = interval
        threading.Thread(target=self._run, name="store-housekeeping", daemon=True).start()

    def _run(self) -> None:
        orphans_due = time.monotonic()
        while True:
            self.holding.wait()
            started = time.monotonic()
            try:
                retention.expire_uploads()
                object_deletions.work_off()
                if time.monotonic() >= orphans_due:
                    orphans_due = time.monotonic() + get_settings().orphan_sweep_s
                    object_deletions.collect_orphans()
            except Exception:
                log.exception("sweeper: upload expiry or object deletion failed; trying again in %.1f s",
                              self._interval)
            time.sleep(max(0.0, self._interval - (time.monotonic() - started)))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s] %(name)s: %(message)s")
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    log.warning("sweeper ready.")
    run_forever()


if __name__ == "__main__":
    main()
