"""The one Celery app: queues, routing and the delivery settings of DESIGN.md section 4.

Messages carry step ids only; Postgres holds all state. Results are ignored.
"""

from celery import Celery
from celery.signals import worker_init, worker_process_init

from core.settings import get_settings
from models.db import size_pool_for_threads
from workers.runtime.broker_watchdog import watch_broker
from workers.runtime.routing import PERCEPTION_QUEUE, REASONING_QUEUE, task_routes


def _build_app() -> Celery:
    settings = get_settings()
    app = Celery("agr", include=["workers.runtime.tasks"])
    app.conf.update(
        broker_url=settings.broker_url or "redis://127.0.0.1:6379/0",
        broker_connection_retry_on_startup=True,
        # Redis re-delivers an unacked message only after this long; it must exceed the
        # longest task or a slow step would run twice. Lost work is the sweeper's job.
        broker_transport_options={**settings.broker_transport_options,
                                  "visibility_timeout": settings.visibility_timeout_s},
        task_ignore_result=True,
        task_acks_late=True,  # ack after the step committed, not when it was received
        task_reject_on_worker_lost=True,  # a killed child puts its message back
        worker_prefetch_multiplier=1,  # a GPU worker must not hoard messages it cannot start
        task_time_limit=settings.task_time_limit_s,
        task_default_queue=REASONING_QUEUE,
        task_routes=task_routes(),
        worker_hijack_root_logger=False,
    )
    return app


app = _build_app()


@worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    # Each pool process builds its own database engine; models load lazily on first use,
    # so they too are created after the fork and never in the parent.
    from models.db import reset_after_fork

    reset_after_fork()


@worker_init.connect
def _set_up_thread_pool_worker(sender, **_kwargs) -> None:
    # A thread-pool worker (the reasoning role) runs its tasks in this one process: its
    # database pool must serve all of them (prefork children keep the small default), and
    # it restarts after a broker outage instead of trusting the reconnect (see the module).
    pool = sender.pool_cls
    if "thread" in (pool if isinstance(pool, str) else pool.__module__):

        size_pool_for_threads(sender.concurrency)
        watch_broker()


@worker_init.connect
def _refuse_misconfigured_engines(sender, **_kwargs) -> None:
    # The GPU perception worker asks the ALM engines: a served-model name the engine does not
    # serve is refused now, naming the setting, not once per call later.
    if PERCEPTION_QUEUE not in set(sender.app.amqp.queues.consume_from or {}):
        return
    # loads torch (the ALM families): perception workers only
    from workers.method.perception.alm.engine import misconfigured_endpoints

    if problems := misconfigured_endpoints():
        raise SystemExit("refusing to start: " + "; ".join(problems))
