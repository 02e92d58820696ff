"""Waiting out a database outage in the CLI's watch loops.

A Postgres restart or failover is not the batch's end: the workers retry their steps and
the sweeper re-sends lapsed ones once the database is back, so a command watching a batch
keeps watching. It says so once when the database goes ("database unreachable, retrying")
and once when it is back, not on every poll.

It waits without an upper bound, on purpose: giving up would stop the workers `agr run`
owns, leaving the batch unfinished for no gain, since nothing is lost by waiting; a person
who would rather stop presses Ctrl-C, which works during the wait (and `agr resume`
continues later), and unattended runs have their own job timeouts.
"""

import time
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console
from rich.markup import escape

from core.database_outage import database_unreachable, outage_reason

T = TypeVar("T")

RETRY_S = 2.0  # between attempts while the database is away


class Outage:
    """Whether the database is away now; reads retried through it, and said once each way.

    `is_outage` picks out the errors that mean the database is away (the API's 503 for the
    commands that go through it)."""

    def __init__(self, console: Console, is_outage: Callable[[BaseException], bool] = database_unreachable,
                 retry_s: float | None = None):
        self.console = console
        self.is_outage = is_outage
        self.retry_s = retry_s  # None: RETRY_S
        self.since: float | None = None  # time.monotonic() when the current outage was first seen

    @property
    def down_for(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def read(self, call: Callable[[], T], while_waiting: Callable[[], object] | None = None) -> T:
        """call(), tried again every `retry_s` for as long as it fails for an outage;
        `while_waiting` runs between tries (restarting workers that died, say). Any
        other error is raised, and KeyboardInterrupt ends the wait."""
        while True:
            try:
                value = call()
            except Exception as exc:
                if not self.is_outage(exc):
                    raise
                self._went(exc)
                if while_waiting is not None:
                    while_waiting()
                time.sleep(RETRY_S if self.retry_s is None else self.retry_s)
                continue
            self._back()
            return value

    def _went(self, exc: BaseException) -> None:
        if self.since is not None:
            return
        self.since = time.monotonic()
        self.console.print(f"[yellow]database unreachable, retrying[/] ({escape(outage_reason(exc))}); the workers keep "
                           "their work. Ctrl-C stops waiting", soft_wrap=True, highlight=False)

    def _back(self) -> None:
        if self.since is None:
            return
        self.console.print(f"[green]database reachable again[/] after {self.down_for:.0f} s", highlight=False)
        self.since = None
