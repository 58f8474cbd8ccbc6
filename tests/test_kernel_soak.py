"""A long session in one kernel: warm calls, failing runs, crashes,
interrupts, background runs and --iter runs (read whole, or dropped
part-way), twice over. What the kernel holds (open
files, threads, memory, shared-memory files) after the second round is no
more than after the first: nothing grows with use."""

import glob
import time

import pytest
from kernel import running_kernel

SETUP = """
import os, time
import numpy as np
from parmagic import WorkerCrashError
BIG = np.ones(2**20)  # 8 MB: goes through shared memory
def inv(x):
    return 1 / x
def crash(x):
    if x == 1:
        os._exit(3)
    return x
def reads_big(x):
    return float(BIG[x])
def slow(x):
    time.sleep(30)
"""

ROUND = """
for i in range({warm}):
    assert get_ipython().run_line_magic('pmap', '-n 2 --no-progress abs [-1, -2, -3]') == [1, 2, 3]
    if i % 10 == 0:
        get_ipython().run_line_magic('pmap', '-n 2 --no-progress reads_big range(4)')
for _ in range({failing}):
    try:
        get_ipython().run_line_magic('pmap', '-n 2 --no-progress inv [1, 0]')
    except ZeroDivisionError:
        pass
for _ in range({crashes}):
    try:
        get_ipython().run_line_magic('pmap', '-n 2 --no-progress crash range(4)')
    except WorkerCrashError:
        pass
for _ in range({background}):
    handle = get_ipython().run_line_magic('pmap', '--bg -n 2 reads_big range(4)')
    assert handle.result(timeout=60) == [1.0] * 4
for _ in range({iterators}):
    results = get_ipython().run_line_magic('pmap', '--iter -n 2 abs range(-40, 0)')
    assert list(results) == list(range(40, 0, -1))
    finished = get_ipython().run_line_magic('pmap', '--iter --unordered -n 2 abs range(-9, 0)')
    assert sorted(value for _, value in finished) == list(range(1, 10))
    left = get_ipython().run_line_magic('pmap', '--iter -n 2 --batch-size 1 abs range(-400, 0)')
    assert [next(left) for _ in range(3)] == [400, 399, 398]
    del left  # dropped unfinished: its run stops
print('round done')
"""

COUNTS = {"warm": 250, "failing": 50, "crashes": 5, "background": 10, "iterators": 10}
INTERRUPTS = 5


def held(kernel):
    """What the kernel process holds now. Open files are the fewest of a few
    looks over a second: zmq's and the event loop's own come and go, while
    a leaked one stays in every look."""
    process = kernel.process
    shared = glob.glob(f"/dev/shm/parmagic_{process.pid}_*/*")
    open_files = []
    for _ in range(5):
        open_files.append(process.num_fds())
        time.sleep(0.2)
    return {"open files": min(open_files), "threads": process.num_threads(),
            "memory MB": process.memory_info().rss / 2**20, "shared files": len(shared)}


def one_round(kernel):
    # progress output and tracebacks are shown; only the end matters here
    reply, outputs = kernel.execute(ROUND.format(**COUNTS), timeout=600)
    assert reply["status"] == "ok", outputs[-3:]
    for _ in range(INTERRUPTS):
        reply, _ = kernel.interrupt_after("%pmap -n 2 --no-progress slow range(2)", 1.0)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert kernel.text("%pmap -n 2 --no-progress abs [-4]").strip() == "[4]"
    return held(kernel)


@pytest.mark.timeout(900)
def test_a_long_session_holds_no_more_after_the_second_round_than_the_first():
    with running_kernel() as kernel:
        kernel.text("%load_ext parmagic")
        kernel.text(SETUP)
        first = one_round(kernel)
        second = one_round(kernel)
    # zmq's and the event loop's own descriptors come and go by 8 or so
    slack = {"open files": 16, "threads": 4, "memory MB": 60, "shared files": 0}
    grew = {name: (first[name], second[name]) for name in first
            if second[name] > first[name] + slack[name]}
    assert not grew, f"grew from the first round to the second: {grew}"
    assert second["shared files"] <= 2  # BIG's file, at most one more version
