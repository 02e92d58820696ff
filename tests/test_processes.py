"""Processes the stack launches never outlive their launcher, even one killed with -9."""

import signal
import subprocess
import sys
import time

import psutil

LAUNCHER = """
import subprocess, sys, time
from local_stack.processes import tied_to_this_process
child = subprocess.Popen(tied_to_this_process([sys.executable, "-c", "import time; time.sleep(120)"]),
                         start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_launched_process_stops_when_its_launcher_is_killed():
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(launcher.stdout.readline()))
    assert child.is_running()

    launcher.send_signal(signal.SIGKILL)
    launcher.wait()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
