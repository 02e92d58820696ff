"""A thread-pool worker that lost its broker restarts once the broker is back, after the
steps it has in flight have stored what they paid for.

Celery's prefork workers reconnect after Redis goes away and comes back; a worker on the
thread pool does not always: its consumer's restart fails while tasks on other threads
still hold the old connection ("Error on stopping Hub ... 'NoneType' object has no
attribute 'hostname'"), and the process stays up consuming nothing (tests/test_chaos.py
saw it; it is a known Celery failure of `--pool threads` over Redis). Rather than trust
the reconnect, the reasoning worker is crash-only there: a watchdog pings the broker on a
connection of its own, and once the broker was lost and is back, or answers as a new
server (a restart between two pings), it ends the process. Its supervisor
(docker-compose's restart policy, `agr run`) starts a fresh one, which connects from scratch.

Lost means refused or dropped connections, or pings timing out for longer than
AGR_BROKER_SLOW_TOLERANCE_S: one ping slower than its 2 s timeout is a stall (a BGSAVE
fork, an fsync), said in the log and nothing more. Before it exits, the worker drains:
a task that starts from then on holds its thread without claiming its step (so no more
messages are taken; its message is re-sent as every lost one is), and the steps in flight
(up to 128 LLM calls, each paid for) finish and store their replies, for up to
AGR_BROKER_RESTART_DRAIN_S. What is still running then is taken back by the sweeper once
its lease lapses, as after a kill.
"""

import logging
import os
import threading
import time
from collections.abc import Callable

import redis

from core.broker_redis import broker_redis
from core.settings import get_settings

log = logging.getLogger(__name__)

PING_EVERY_S = 1.0
EXIT_STATUS = 75  # EX_TEMPFAIL: try again

_draining = threading.Event()
_steps = threading.Condition()
_in_flight = 0


def watch_broker() -> threading.Thread:
    thread = threading.Thread(target=_watch, name="broker-watchdog", daemon=True)
    thread.start()
    return thread


def run_unless_draining(run: Callable[..., None], *args) -> None:
    """`run(*args)` counted as a step in flight; once the worker drains for its restart, a
    new task instead holds its thread until the process ends, claiming nothing."""
    global _in_flight
    if _draining.is_set():
        log.info("draining for a restart: not taking step %s (the sweeper re-sends it)", args[0] if args else "")
        while True:  # the process is about to exit; holding the thread keeps Celery from prefetching more
            time.sleep(60)
    with _steps:
        _in_flight += 1
    try:
        run(*args)
    finally:
        with _steps:
            _in_flight -= 1
            _steps.notify_all()


def _watch() -> None:
    broker = BrokerHealth(get_settings().broker_slow_tolerance_s)
    while not broker.must_restart:
        time.sleep(PING_EVERY_S)
        broker.ping()
    _drain_then_exit(get_settings().broker_restart_drain_s)


class BrokerHealth:
    """What the pings say: a stall is tolerated, a lost broker that is back (or a new one)
    means a restart."""

    def __init__(self, slow_tolerance_s: float):
        self.slow_tolerance_s = slow_tolerance_s
        self.lost = False
        self.slow_since: float | None = None
        self.server: str | None = None  # the run id of the Redis last answering
        self.must_restart = False

    def ping(self) -> None:
        try:
            server = broker_redis().info("server")["run_id"]
        except redis.TimeoutError:
            self._slow()
            return
        except (redis.RedisError, OSError) as exc:
            if not self.lost:
                log.warning("broker unreachable (%s); this worker restarts once it is back", exc)
            self.lost = True
            return
        if self.slow_since is not None and not self.lost:
            log.warning("broker slow for %.1f s, answering again: carrying on", time.monotonic() - self.slow_since)
        self.slow_since = None
        # A new run id is a restarted Redis, even one that came back between two pings.
        self.must_restart = self.lost or self.server not in (None, server)
        self.server = server

    def _slow(self) -> None:
        now = time.monotonic()
        if self.slow_since is None:
            self.slow_since = now
            log.warning("broker slow: a ping took over its timeout; tolerated for %.0f s", self.slow_tolerance_s)
        elif now - self.slow_since > self.slow_tolerance_s and not self.lost:
            log.warning("broker slow for %.0f s: taken as lost; this worker restarts once it answers",
                        now - self.slow_since)
            self.lost = True


def _drain_then_exit(drain_s: float) -> None:
    _draining.set()
    with _steps:
        if _in_flight:
            log.warning("broker back after an outage: waiting for %d step(s) in flight to store their "
                        "replies (at most %.0f s), then exiting so that a fresh worker reconnects",
                        _in_flight, drain_s)
        _steps.wait_for(lambda: _in_flight == 0, timeout=drain_s)
        left = _in_flight
    # Straight to the log's file descriptor: os._exit flushes no logging handler.
    os.write(2, f"broker back after an outage: exiting so that a fresh worker reconnects "
                f"({left} step(s) still in flight left to their leases)\n".encode())
    os._exit(EXIT_STATUS)
