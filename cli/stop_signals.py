"""How the self-contained commands (`agr run`, `agr resume`, `agr up`) are asked to stop.

SIGTERM is what docker, systemd and supervisors send, so it stops them exactly as a Ctrl-C
does: Python's KeyboardInterrupt unwinds the command, which stops its workers warm (their
in-flight steps finish or are handed back) and every service it started.

SIGINT is handled the same way unless it was ignored when the command started: a process
started by `nohup`, a CI runner or a background job of a script inherits SIGINT ignored,
and its starter meant that; such a process still stops on SIGTERM.

Once a stop has begun, further SIGINTs and SIGTERMs are ignored: a second signal would
raise in the middle of the warm stop and leave the children it was stopping running.
The stop itself is bounded (local_stack.processes.stop_all escalates to SIGKILL).
"""

import signal


class StopRequested(KeyboardInterrupt):
    """A Ctrl-C or a SIGTERM; `signum` says which (a command's exit status is 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_sigint_and_sigterm() -> None:
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def _stop(signum: int, _frame) -> None:
    for each in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(each) is _stop:
            signal.signal(each, signal.SIG_IGN)
    raise StopRequested(signum)
