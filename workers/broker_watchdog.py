"""A thread-pool worker that lost its broker exits once the broker is back, to be restarted.

Celery's prefork workers reconnect after Redis goes away and comes back; a worker on the
thread pool does not always: its consumer's restart fails while tasks on other threads
still hold the old connection ("Error on stopping Hub ... 'NoneType' object has no
attribute 'hostname'"), and the process stays up consuming nothing (tests/test_chaos.py
saw it; it is a known Celery failure of `--pool threads` over Redis). Rather than trust
the reconnect, the reasoning worker is crash-only there: a watchdog pings the broker on a
connection of its own, and once a ping failed and a later one succeeds, or the broker
answers as a new server (a restart between two pings), it ends the process. Its
supervisor (docker-compose's restart policy, `agr run`) starts a fresh one, which
connects from scratch. Nothing is lost: the steps it held keep their leases until
they lapse and the sweeper re-queues them; LLM calls in flight are asked again.
"""

import logging
import os
import threading
import time

import redis

from core.broker_redis import broker_redis

log = logging.getLogger(__name__)

PING_EVERY_S = 1.0
EXIT_STATUS = 75  # EX_TEMPFAIL: try again


def watch_broker() -> threading.Thread:
    thread = threading.Thread(target=_watch, name="broker-watchdog", daemon=True)
    thread.start()
    return thread


def _watch() -> None:
    lost, seen_server = False, None
    while True:
        time.sleep(PING_EVERY_S)
        try:
            server = broker_redis().info("server")["run_id"]
        except (redis.RedisError, OSError):
            if not lost:
                log.warning("broker unreachable; this worker restarts once it is back")
            lost = True
            continue
        # A new run id is a restarted Redis, even one that came back between two pings.
        if lost or seen_server not in (None, server):
            # Straight to the log's file descriptor: os._exit flushes no logging handler.
            os.write(2, b"broker back after an outage: exiting so that a fresh worker reconnects\n")
            os._exit(EXIT_STATUS)
        seen_server = server
