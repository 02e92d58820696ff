"""The suite's leak check fails the module that left a process running, names the module and
the process, and stops it: run on a module that leaks on purpose (tests/leak_probe.py), in a
pytest of its own started with SIGINT ignored, as a CI runner starts the suite."""

import os
import sys
from pathlib import Path

import psutil

from tests import children

ROOT = Path(__file__).resolve().parents[1]


def test_a_module_that_leaves_a_process_running_fails_by_name_and_the_process_is_stopped(tmp_path):
    # Its own --basetemp: a pytest that makes its default one resets /tmp/pytest-of-<user> to
    # mode 0700, and a private Postgres of another module (run as user pgserver, which
    # pgserver lets through that folder) could no longer reach its data when it restarts.
    ran = children.run([sys.executable, "-m", "pytest", "tests/leak_probe.py", "-p", "no:cacheprovider",
                        "-o", "addopts=", "-q", f"--basetemp={tmp_path / 'inner'}"],
                       os.environ | {"AGR_TEST_LEAK_GRACE_S": "1"}, sigint="ignore", timeout=300, cwd=ROOT)
    out = ran.stdout + ran.stderr
    assert ran.returncode == 1, out
    assert "ERROR at teardown of test_starts_a_process_and_forgets_it" in out, out
    assert "tests.leak_probe left 1 process(es) running (now stopped)" in out, out
    assert "leak-probe" in out, out  # its command line
    assert not [p for p in psutil.process_iter(["cmdline"]) if "# leak-probe" in " ".join(p.info["cmdline"] or [])]
