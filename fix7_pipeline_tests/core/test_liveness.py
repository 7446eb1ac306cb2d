"""core/run/liveness.py on real processes: a running one, one killed and reaped, a zombie, and a reused pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fix7_pipeline.core.run.liveness import process_alive


def test_a_running_process_is_alive_and_a_killed_one_is_not():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        assert process_alive(p.pid, time.time())
        p.send_signal(signal.SIGKILL)
        time.sleep(0.3)
        assert not process_alive(p.pid, time.time())  # a zombie until reaped: it runs nothing
        p.wait()
        assert not process_alive(p.pid, time.time())
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_a_pid_started_after_the_run_is_another_process():
    assert process_alive(os.getpid(), time.time())
    assert not process_alive(os.getpid(), time.time() - 10 * 365 * 86400)  # "the run" began before this process


def test_no_pid_recorded_is_not_provably_dead():
    assert process_alive(None, time.time())
