"""Every process the suite starts, started and stopped one way.

- Started through local_stack/tied_child.py: it dies with the pytest process, and its SIGINT is at
  the disposition the test asks for (default unless told), never the one pytest inherited.
  Run under `nohup` or by a CI runner, pytest itself starts with SIGINT ignored, and a child
  that inherits that never stops on the Ctrl-C a test sends it.
- Stopped by local_stack.processes.stop_all's escalation, which always ends: the polite signal, a
  bounded wait, SIGTERM, then SIGKILL of the whole tree.
- Marked: each carries AGR_TEST_MODULE in its environment (and passes it on to whatever it
  starts, daemons included), so conftest's leak check finds any process a module left
  running, however far it wandered from its parent, and names that module.
"""

import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from local_stack import processes

SESSION_MARK = "AGR_TEST_SESSION"  # this pytest process's id, inherited by all it starts
MODULE_MARK = "AGR_TEST_MODULE"  # the module that started it
_OUTLIVES_MODULES: set[int] = set()  # session fixtures' processes (the S3 server)


def start(command: Sequence[str], env: dict | None = None, sigint: str = "default", **popen) -> subprocess.Popen:
    """`command` as a child of this test, with SIGINT at `sigint` ("default" or "ignore",
    as under nohup) and no standard input unless given. `popen`: Popen's other arguments."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(processes.tied_to_this_process(list(command), sigint), env=env, **popen)


def run(command: Sequence[str], env: dict | None = None, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """subprocess.run's counterpart (output captured as text): past `timeout` its whole tree is
    stopped, not only the direct child, before TimeoutExpired is raised."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    process = start(command, env, start_new_session=True, **popen)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        processes.stop(process, timeout=5)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def read_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    """What `process` printed (its stdout a text pipe) up to and including the first line
    holding `marker`; an AssertionError with all it printed if no such line came in time."""
    seen, found = [], threading.Event()

    def read():
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                break
        found.set()  # the marker, or the end of its output (it exited)

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout) or marker not in "".join(seen):
        raise AssertionError(f"no {marker!r} printed in {timeout:g} s:\n" + "".join(seen))
    return "".join(seen)


def stop(process: subprocess.Popen, first: int = signal.SIGTERM, timeout: float = 60) -> str:
    """Stop `process` and its tree (local_stack.processes.stop_all); what ended it."""
    return processes.stop(process, timeout, first)


def outlives_modules(process: subprocess.Popen) -> None:
    """A session fixture's process: not a module's leak."""
    _OUTLIVES_MODULES.add(process.pid)


def session_over() -> None:
    """Every fixture is done: a session fixture's process still running is a leak too."""
    _OUTLIVES_MODULES.clear()


@dataclass(frozen=True)
class Leftover:
    pid: int
    module: str
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} started by {self.module}: {self.command[:300]}"


def marked_processes(session: str) -> list[Leftover]:
    """Every live process on the machine that this session started (directly or not), less
    the session fixtures'."""
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        if process.pid == os.getpid() or process.pid in _OUTLIVES_MODULES or \
                process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            env = process.environ()
            if env.get(SESSION_MARK) != session:
                continue
            if _OUTLIVES_MODULES & {p.pid for p in process.parents()}:
                continue
            found.append(Leftover(process.pid, env.get(MODULE_MARK, "?"), " ".join(process.cmdline())))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_leftovers(leftovers: list[Leftover]) -> None:
    """SIGTERM, a short grace, SIGKILL: so one module's leak cannot fail the modules after it."""
    alive = []
    for leftover in leftovers:
        try:
            alive.append(psutil.Process(leftover.pid))
        except psutil.NoSuchProcess:
            pass
    processes.end_processes(alive)

