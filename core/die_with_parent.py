"""Run a command that the kernel stops when the process that launched it dies.

    python core/die_with_parent.py <launcher pid> <command> [args...]

Workers and servers started by `agr run` (and by the tests) live in their own sessions,
so that a Ctrl-C is the launcher's to handle; that also means nothing would stop them if
the launcher were killed outright, and orphaned workers would go on taking messages.
Linux's parent-death signal (SIGTERM: Celery's warm shutdown) closes that gap; on other
systems the command just runs. Run by path, so it imports nothing from the project.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    launcher, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != launcher:  # the launcher died before the request took effect
            sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
