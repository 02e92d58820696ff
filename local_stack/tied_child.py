"""Run a command as a child tied to the process that launched it:

    python local_stack/tied_child.py <launcher pid> [--sigint=default|ignore] <command> [args...]

1. It dies with its launcher. Workers and servers started by `agr run` (and by the tests)
   live in their own sessions, so that a Ctrl-C is the launcher's to handle; that also means
   nothing would stop them if the launcher were killed outright, and orphaned workers would
   go on taking messages. Linux's parent-death signal (SIGTERM: Celery's warm shutdown)
   closes that gap; on other systems the command just runs.
2. It starts with SIGINT and SIGQUIT at their defaults, whatever the launcher inherited. A
   process started by `nohup`, by a CI runner or as a background job of a script inherits
   both *ignored*, and passes that on through fork and exec: Python then never raises
   KeyboardInterrupt, and a child its launcher stops with SIGINT never stops. Our children
   are stopped by us, with the signals we choose. `--sigint=ignore` starts one as such a
   starter would (the tests use it to show that a stop does not depend on SIGINT).

Run by path, so it imports nothing from the project.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    launcher, command = int(argv[0]), argv[1:]
    sigint = signal.SIG_DFL
    if command and command[0].startswith("--sigint="):
        sigint = {"default": signal.SIG_DFL, "ignore": signal.SIG_IGN}[command.pop(0).split("=", 1)[1]]
    signal.signal(signal.SIGINT, sigint)  # an ignored disposition survives exec; a default one stays default
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != launcher:  # the launcher died before the request took effect
            sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
