"""Asking, before paid work (an LLM reply, a model run), whether the step it is for is still
this worker's to do.

The method does not know about leases: whoever runs a step (workers/runtime/lease.py) sets
a check for the thread that runs it, and the agents and tools call `confirm_still_owned()`
before they spend. Outside a step (a benchmark or a test calling a tool) no check is set
and the work goes ahead.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_check: ContextVar[Callable[[], None] | None] = ContextVar("paid_work_check", default=None)


@contextmanager
def checked_by(check: Callable[[], None]) -> Iterator[None]:
    """Paid work inside the block calls `check` first; it raises to stop the work."""
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)


def confirm_still_owned() -> None:
    """Raise (whatever the runner's check raises: LeaseLost) if the step this thread works
    for is no longer its own; do nothing outside a step."""
    check = _check.get()
    if check is not None:
        check()


def inside_a_step() -> bool:
    """Whether this thread works for a step that a runner checks."""
    return _check.get() is not None
