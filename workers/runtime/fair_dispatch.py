"""Which due steps go out next: the fair order in which the outbox fills a queue's window.

The broker holds at most AGR_DISPATCH_WINDOW messages per queue that no worker has claimed
yet (workers/runtime/outbox.py); everything else waits in Postgres, due. So the order in which
due steps are chosen for the window is the order in which work starts, and it is chosen
here, per queue, each time the window has room:

- round-robin across tenants: the tenant with the fewest messages in the window goes
  next (ties: the one whose work has waited longest), so a tenant's 10-item batch waits
  behind at most a window of another tenant's 50,000-item one, never behind all of it.
  Batches without a tenant (the CLI's) count as one tenant;
- within a tenant, round-robin across its batches the same way;
- within a batch, steps tried before first (a retry whose backoff ran out, a re-send the
  sweeper could not make), then the steps of the jobs that started first, then the
  oldest due: a batch finishes the jobs it began before it begins more, so its results
  come from the start, not all at the end, and an expiry finds whole jobs done.

A turn counts the messages a tenant or batch has in the window already, so a pick of one
step is as fair as a pick of a hundred: a tenant with its share out waits for the others.
Due steps of jobs that ended (cancelled, expired) are not chosen: the sweeper settles them.
"""

from functools import cache

from sqlalchemy import text

from models.status import TERMINAL_JOB_STATUSES
from workers.runtime.routing import STEP_ROUTES

_ENDED = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_JOB_STATUSES))


def kinds_of(queue: str) -> list[str]:
    return [kind.value for kind, route in STEP_ROUTES.items() if route.queue == queue]


def _window_rows(queue: str) -> str:
    """The batches of the queue's messages out and not yet claimed, of jobs not ended (a
    cancelled batch's are no-ops to the workers, and the sweeper settles them within a
    pass). Read per kind, newest number first and at most :cap of each, so the planner
    walks the partial index on (kind, sent_seq) and stops: the backlog of never-sent steps
    (no number) is never read. (Asked for every kind at once, or joined to jobs before
    the limit, it misjudges the rows and reads the whole queue.)"""
    newest = " UNION ALL ".join(
        f"(SELECT s.job_id FROM steps s WHERE s.status = 'queued' AND s.kind = '{kind}'"
        f" AND s.sent_seq IS NOT NULL AND s.send_due_at IS NULL ORDER BY s.sent_seq DESC LIMIT :cap)"
        for kind in kinds_of(queue))
    return f"SELECT j.batch_id FROM ({newest}) w JOIN jobs j ON j.id = w.job_id WHERE j.status NOT IN ({_ENDED})"


@cache
def _in_window(queue: str):
    return text(f"SELECT count(*) FROM ({_window_rows(queue)}) window_rows")


@cache
def _next_due(queue: str):
    # One pass over the queue's due steps (each batch's first :room kept: no batch gets
    # more), then turns among those few. The pass grows with the backlog: see the README.
    kinds = ", ".join(f"'{kind}'" for kind in kinds_of(queue))
    return text(f"""
WITH sent AS (
    SELECT batch_id, count(*) AS n FROM ({_window_rows(queue)}) window_rows GROUP BY batch_id
), due AS (
    SELECT s.id, s.sends, s.send_due_at, j.batch_id,
           row_number() OVER (PARTITION BY j.batch_id
                              ORDER BY s.sends > 0 DESC, j.started_at NULLS LAST, s.send_due_at, s.id) AS nth
    FROM steps s JOIN jobs j ON j.id = s.job_id
    WHERE s.send_due_at <= now() AND s.status = 'queued' AND s.kind IN ({kinds})
      AND j.status NOT IN ({_ENDED})
), batch_turns AS (
    SELECT d.id, d.sends, d.send_due_at, d.batch_id, coalesce(b.tenant_id::text, '') AS tenant,
           coalesce(sent.n, 0) + d.nth AS batch_turn,
           min(d.send_due_at) OVER (PARTITION BY d.batch_id) AS batch_waiting_since
    FROM due d JOIN batches b ON b.id = d.batch_id LEFT JOIN sent ON sent.batch_id = d.batch_id
    WHERE d.nth <= :room
), tenant_sent AS (
    SELECT coalesce(b.tenant_id::text, '') AS tenant, sum(sent.n) AS n
    FROM sent JOIN batches b ON b.id = sent.batch_id
    GROUP BY 1
), tenant_turns AS (
    SELECT t.id, t.sends,
           coalesce(ts.n, 0) + row_number() OVER (PARTITION BY t.tenant
                                                  ORDER BY t.batch_turn, t.batch_waiting_since, t.batch_id) AS turn,
           min(t.send_due_at) OVER (PARTITION BY t.tenant) AS tenant_waiting_since
    FROM batch_turns t LEFT JOIN tenant_sent ts ON ts.tenant = t.tenant
)
SELECT id, sends FROM tenant_turns
ORDER BY turn, tenant_waiting_since, id
LIMIT :room
""")


def in_window(session, queue: str, window: int) -> int:
    """Messages of `queue` out and not yet claimed, of jobs not ended; `window`: the most a
    queue holds (read up to twice that a step kind: room for a cancelled batch's leftovers)."""
    return session.scalar(_in_window(queue), {"cap": 2 * window})


def next_due(session, queue: str, room: int, window: int) -> list[tuple[int, int]]:
    """Up to `room` due steps of `queue` in the fair order, as (step id, messages it had);
    `window`: the most messages a queue holds, to count what each batch has out."""
    return [tuple(row) for row in session.execute(_next_due(queue), {"room": room, "cap": 2 * window})]
