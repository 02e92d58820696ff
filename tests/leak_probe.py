"""A module that leaves a process running, on purpose: test_leak_check.py runs it in a pytest
of its own and expects the leak check to fail it. Not collected by the suite (no test_ prefix)."""

import sys

from tests import children


def test_starts_a_process_and_forgets_it():
    children.start([sys.executable, "-c", "import time; time.sleep(600)  # leak-probe"])
