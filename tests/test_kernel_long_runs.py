"""Long runs in a live kernel: a cache that survives a killed kernel, and
background runs that leave the notebook free."""

import glob
import time

import psutil
import pytest
from kernel import STOP_ON_ERROR, parmagic_kernel
from platforms import needs_linux
import waiting

WORK = '''
import os, time
LOG, GATE, FREE = {log!r}, {gate!r}, {free!r}

def work(x):
    with open(LOG, "a") as log:
        log.write(f"{{x}}\\n")
    if GATE is None:
        time.sleep(0.25)
    elif x >= FREE:  # held back until the test creates GATE
        ends = time.monotonic() + 60
        while not os.path.exists(GATE):
            if time.monotonic() > ends:
                raise TimeoutError(f"the test never created {{GATE}}")
            time.sleep(0.01)
    return x * x
'''
DEADLINE = 60  # seconds: a wait that takes longer fails, saying what it waited for


def define_work(kernel, log, gate=None, free=0):
    """Define ``work`` in the kernel: it logs each item it starts; with a
    gate, items from ``free`` on wait for the test to create that file."""
    kernel.text(WORK.format(log=str(log), gate=gate and str(gate), free=free))


def until(condition, what):
    waiting.until(condition, what, DEADLINE, every=0.05)


@pytest.fixture
def kernel():
    with parmagic_kernel() as live:
        yield live


def computed(log):
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def stored(cache):
    return [entry for folder in cache.iterdir() for entry in folder.glob("*.pkl")]


@needs_linux("SIGKILL and /dev/shm")
def test_cache_survives_a_killed_kernel_and_computes_only_the_missing(kernel, tmp_path):
    log, cache = tmp_path / "log", tmp_path / "cache"
    # items are short naps, not held back: a worker notices its kernel is
    # gone only between items
    define_work(kernel, log)
    kernel.client.execute(f"squares = %pmap -n 2 --no-progress --cache {cache} work range(24)", stop_on_error=STOP_ON_ERROR)
    until(lambda: cache.exists() and len(stored(cache)) >= 4, "4 results in the cache")
    dead = kernel.process
    started = dead.children(recursive=True)  # workers and resource trackers
    dead.kill()  # the kernel dies mid-run, alone (a crash, not a forced restart)
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"the killed kernel's processes kept running: {alive}"
    # its resource tracker, which outlived it, removed what it had in /dev/shm
    assert glob.glob(f"/dev/shm/*{dead.pid}*") == []
    kernel.manager.restart_kernel(now=True)
    n_stored = len(stored(cache))  # final: only the kernel wrote to the cache
    assert 4 <= n_stored < 24
    kernel.client.wait_for_ready(timeout=60)
    kernel.text("%load_ext parmagic")
    define_work(kernel, log)
    log.unlink()
    shown = kernel.text(f"squares = %pmap -n 2 --no-progress --cache {cache} work range(24)\n"
                        "print(squares == [x * x for x in range(24)], _parmap.n_cached)")
    assert shown == f"True {n_stored}\n"
    assert len(computed(log)) == 24 - n_stored  # only the missing items ran again


def test_changed_code_is_computed_again(kernel, tmp_path):
    log, cache = tmp_path / "log", tmp_path / "cache"
    define_work(kernel, log)
    kernel.text(f"first = %pmap -n 2 --cache {cache} work range(4)")
    kernel.text(WORK.format(log=str(log), gate=None, free=0).replace("x * x", "x + 1"))
    # --no-progress: the bar's text would be part of what is compared
    shown = kernel.text(f"second = %pmap -n 2 --no-progress --cache {cache} work range(4)\n"
                        "print(second, _parmap.n_cached)")
    assert shown == "[1, 2, 3, 4] 0\n"


def test_bg_returns_at_once_and_binds_out_when_done(kernel, tmp_path):
    gate = tmp_path / "open"
    define_work(kernel, tmp_path / "log", gate, free=0)  # no item can finish yet
    reply, outputs = kernel.execute("%pmap --bg -n 2 -o squares work range(12)")
    assert reply["status"] == "ok"
    shown = "".join(text for _, text in outputs)
    assert shown.startswith("running in the background: 0 of 12 finished, 0 failed")
    assert kernel.text("print(1 + 1)") == "2\n"  # the notebook is free
    assert kernel.text("print('squares' in dir())") == "False\n"
    gate.touch()
    shown = kernel.text("_parmap.wait(30)\nprint(squares == [x * x for x in range(12)], "
                        "_parmap.status)")
    assert shown == "True done\n"


def test_bg_cancel_stops_the_workers_and_keeps_results(kernel, tmp_path):
    # items 0-3 finish; 4 and 5 hold both workers (the gate never opens)
    define_work(kernel, tmp_path / "log", tmp_path / "never", free=4)
    kernel.text("run = %pmap --bg -n 2 --batch-size 1 work range(200)")
    until(lambda: kernel.text("print(run.n_finished)") == "4\n", "4 items to finish")
    started = time.monotonic()
    shown = kernel.text("run.cancel()\nprint(run.status, run.n_finished, run.results[:6])\n"
                        "run")
    assert shown.startswith("cancelled 4 [0, 1, 4, 9, <not computed>, <not computed>]\n"
                            "background run of work cancelled: 4 of 200 finished, 0 failed")
    assert time.monotonic() - started < 3
    reply, _ = kernel.execute("run.result()")
    assert reply["status"] == "error" and reply["ename"] == "RunCancelled"
    assert kernel.text("%pmap -n 2 abs [-1, -2]").strip() == "[1, 2]"
    assert len(kernel.workers()) <= 2


def test_interrupting_another_cell_leaves_the_bg_run_going(kernel, tmp_path):
    gate = tmp_path / "open"
    define_work(kernel, tmp_path / "log", gate, free=2)  # busy while the cell is interrupted
    kernel.text("run = %pmap --bg -n 2 work range(12)")
    reply, answered_in = kernel.interrupt_after("import time\ntime.sleep(30)", seconds=1.0)
    assert reply["ename"] == "KeyboardInterrupt" and answered_in < 2
    until(lambda: kernel.text("print(run.n_finished)") == "2\n", "2 items to finish")
    assert kernel.text("print(run.status)") == "running\n"
    gate.touch()
    shown = kernel.text("print(run.result(30) == [x * x for x in range(12)], run.status)")
    assert shown == "True done\n"


def test_bg_error_shows_when_the_result_is_asked_for(kernel):
    kernel.text("def inv(x):\n    return 1 / x\n")
    reply, _ = kernel.execute("run = %pmap --bg -n 2 inv [1, 0, 2]")
    assert reply["status"] == "ok"
    kernel.text("run.wait(30)")
    reply, _ = kernel.execute("run.result()")
    assert reply["ename"] == "ZeroDivisionError"
    assert "item 1 (0) failed" in "\n".join(reply["traceback"])
