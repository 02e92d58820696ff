"""Work that holds Python's interpreter lock for seconds, run in a helper process.

Why: a step's lease is renewed by a thread of its worker (workers/runtime/lease.py), and a thread
runs only while it can take the interpreter lock. numba code compiled without `nogil` never
lets go of it: librosa's pyin decodes its pitch track in such a loop, 3 s for 12 s of audio
on a fast core, several times that on a slow or busy one. Past a lease, the sweeper takes
the step back while its worker is still on it, and every attempt ends the same way. A
helper process has an interpreter lock of its own: the step's thread waits on a pipe
without holding this one, and the renewals go on.

Only where a lease is held (a step running in a worker). Elsewhere, a benchmark or a test
calling a tool, there is nothing to keep alive and the function runs here.

One helper per process, started at first use and kept. It is a fresh interpreter (none of
the worker's threads, locks or connections), talks over a socket pair, and ends when its
end of the pair reads end-of-file, which is when the worker exits, however it exits: no
signal or process group is needed to stop it. A helper that dies during a call (a crash in
native code, a kill) fails that call with a reason; the next call starts a new one.

Not multiprocessing: a Celery prefork child is a daemonic process, and multiprocessing
refuses to start children from one. Not ProcessPoolExecutor: its processes outlive a
worker that is killed (they wait on a queue whose writing end they hold themselves).
"""

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TypeVar

from workers.method.paid_work import inside_a_step

T = TypeVar("T")

_helper: tuple[subprocess.Popen, Connection] | None = None
_one_call_at_a_time = threading.Lock()


class HelperDied(RuntimeError):
    """The helper process ended during a call."""


def run_apart(function: Callable[..., T], *args) -> T:
    """`function(*args)`: in this process's helper while a step's lease is held, here
    otherwise."""
    return run_in_helper(function, *args) if inside_a_step() else function(*args)


def run_in_helper(function: Callable[..., T], *args) -> T:
    """`function(*args)` in this process's helper: its value, or the exception it raised.
    `function` and its arguments travel by pickle (a function defined at a module's top
    level, arrays, dicts)."""
    with _one_call_at_a_time:
        process, connection = _started()
        try:
            connection.send((function, args))
            succeeded, value = connection.recv()
        except (EOFError, OSError) as exc:
            connection.close()
            raise HelperDied(f"{function.__module__}.{function.__qualname__} ended the process it ran in "
                             f"({_ended(process)})") from exc
    if succeeded:
        return value
    raise value


def stop_helper() -> None:
    """End this process's helper, if it has one (closing our end ends it)."""
    global _helper
    with _one_call_at_a_time:
        if _helper is not None:
            process, connection = _helper
            _helper = None
            connection.close()
            process.wait()


def _started() -> tuple[subprocess.Popen, Connection]:
    global _helper
    if _helper is None or _helper[0].poll() is not None:
        if _helper is not None:  # it died between calls
            _helper[1].close()
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        _helper = (process, Connection(ours.detach()))
    return _helper


def _ended(process: subprocess.Popen) -> str:
    global _helper
    _helper = None
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return "it stopped answering and was killed"
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _serve(connection: Connection) -> None:
    """The helper's loop: call, answer, until the worker's end of the pair closes."""
    while True:
        try:
            function, args = connection.recv()
        except EOFError:
            return
        try:
            reply = (True, function(*args))
        except Exception as exc:
            reply = (False, exc)
        try:
            connection.send(reply)
        except Exception as exc:  # a value or exception that does not pickle
            connection.send((False, RuntimeError(f"{type(reply[1]).__name__}: {reply[1]} ({exc})")))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # its worker ends it, by closing the pair
    _serve(Connection(int(sys.argv[1])))
