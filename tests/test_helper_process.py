"""The helper process that runs interpreter-lock-holding work apart from a step's lease
renewals (workers/method/perception/helper_process.py): answers, errors, crashes, and its end
when the process that started it is killed."""

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from workers.method.perception.helper_process import HelperDied, run_apart, run_in_helper, stop_helper


@pytest.fixture(autouse=True, scope="module")
def helper_stopped_at_the_end():
    yield
    stop_helper()


def test_values_and_errors_come_back_from_another_process():
    helper = run_in_helper(os.getpid)
    assert helper != os.getpid()
    assert run_in_helper(sum, [1, 2, 3]) == 6
    with pytest.raises(ValueError, match="invalid literal"):
        run_in_helper(int, "not a number")
    assert run_in_helper(os.getpid) == helper  # one helper, kept between calls
    stop_helper()
    assert not psutil.pid_exists(helper)


def test_outside_a_step_the_work_runs_here():
    assert run_apart(os.getpid) == os.getpid()


def test_a_helper_that_crashes_fails_its_call_with_a_reason_and_the_next_call_gets_a_new_one():
    before = run_in_helper(os.getpid)
    with pytest.raises(HelperDied, match=r"posix.abort ended the process it ran in \(killed by signal 6\)"):
        run_in_helper(os.abort)
    after = run_in_helper(os.getpid)
    assert after != before and psutil.pid_exists(after)


def test_the_helper_ends_when_its_worker_is_killed(tmp_path):
    """kill -9 of the worker: nothing signals the helper; it must see its socket close."""
    worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, sys, time
        from workers.method.perception.helper_process import run_in_helper
        print(run_in_helper(os.getpid), flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    helper = psutil.Process(int(worker.stdout.readline()))
    worker.kill()
    worker.wait()
    helper.wait(timeout=60)  # raises if it is still running then
    assert not helper.is_running()
