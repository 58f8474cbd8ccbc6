"""``common.processes``: whether a pid is a live process, and stopping one."""

import os
import subprocess
import sys

from parmagic.common import processes


def test_this_process_is_alive_and_an_ended_one_is_not():
    assert processes.alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process now
    assert not processes.alive(child.pid)


def test_kill_stops_a_process_at_once_and_says_when_it_was_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert processes.kill(child.pid)
    assert child.wait(timeout=10) != 0
    assert not processes.kill(child.pid)
