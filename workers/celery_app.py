"""The one Celery app: queues, routing and the delivery settings of DESIGN.md section 4.

Messages carry step ids only; Postgres holds all state. Results are ignored.
"""

from celery import Celery
from celery.signals import worker_process_init

from core.settings import get_settings
from models.status import StepKind

PERCEPTION_QUEUE = "perception"  # GPU tools: audio-language models, speech recognition
PERCEPTION_CPU_QUEUE = "perception-cpu"  # CPU tools, so a GPU never waits on librosa
REASONING_QUEUE = "reasoning"


def _build_app() -> Celery:
    settings = get_settings()
    app = Celery("agr", include=["workers.tasks"])
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
        task_routes={
            "workers.tasks.perceive_cpu": {"queue": PERCEPTION_CPU_QUEUE},
            "workers.tasks.perceive_gpu": {"queue": PERCEPTION_QUEUE},
            "workers.tasks.reason": {"queue": REASONING_QUEUE},
            "workers.tasks.sweep": {"queue": REASONING_QUEUE},
        },
        beat_schedule={
            "sweep-expired-leases": {
                "task": "workers.tasks.sweep",
                "schedule": settings.sweep_interval_s,
                # A sweep older than one interval is superseded by the next one.
                "options": {"expires": settings.sweep_interval_s},
            }
        },
        worker_hijack_root_logger=False,
    )
    return app


app = _build_app()


def queue_of(kind: StepKind) -> str:
    """The queue a step of this kind is sent to."""
    return {StepKind.PERCEIVE_CPU: PERCEPTION_CPU_QUEUE, StepKind.PERCEIVE_GPU: PERCEPTION_QUEUE}.get(
        kind, REASONING_QUEUE)


@worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    # Each pool process builds its own database engine; models load lazily on first use,
    # so they too are created after the fork and never in the parent.
    from models.db import reset_after_fork

    reset_after_fork()
