"""Long runs in a live kernel: a cache that survives a killed kernel, and
background runs that leave the notebook free."""

import time

import psutil
import pytest
from kernel import running_kernel

WORK = '''
import time
LOG = {log!r}

def work(x):
    with open(LOG, "a") as log:
        log.write(f"{{x}}\\n")
    time.sleep(0.25)
    return x * x
'''


@pytest.fixture
def kernel():
    with running_kernel() as live:
        live.text("%load_ext parmagic")
        yield live


def computed(log):
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def test_cache_survives_a_killed_kernel_and_computes_only_the_missing(kernel, tmp_path):
    log, cache = tmp_path / "log", tmp_path / "cache"
    kernel.text(WORK.format(log=str(log)))
    kernel.client.execute(f"squares = %pmap -n 2 --no-progress --cache {cache} work range(24)")
    time.sleep(2.0)  # a few items are done, most are not
    workers = kernel.workers()
    kernel.manager.restart_kernel(now=True)  # the kernel dies mid-run
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, "the killed kernel's workers kept running"
    (folder,) = cache.iterdir()
    stored = len(list(folder.glob("*.pkl")))
    assert 0 < stored < 24
    kernel.client.wait_for_ready(timeout=60)
    kernel.text("%load_ext parmagic")
    kernel.text(WORK.format(log=str(log)))
    log.unlink()
    shown = kernel.text(f"squares = %pmap -n 2 --no-progress --cache {cache} work range(24)\n"
                        "print(squares == [x * x for x in range(24)], _parmap.n_cached)")
    assert shown == f"True {stored}\n"
    assert len(computed(log)) == 24 - stored  # only the missing items ran again


def test_changed_code_is_computed_again(kernel, tmp_path):
    log, cache = tmp_path / "log", tmp_path / "cache"
    kernel.text(WORK.format(log=str(log)))
    kernel.text(f"first = %pmap -n 2 --cache {cache} work range(4)")
    kernel.text(WORK.format(log=str(log)).replace("x * x", "x + 1"))
    shown = kernel.text(f"second = %pmap -n 2 --cache {cache} work range(4)\n"
                        "print(second, _parmap.n_cached)")
    assert shown == "[1, 2, 3, 4] 0\n"


def test_bg_returns_at_once_and_binds_out_when_done(kernel, tmp_path):
    kernel.text(WORK.format(log=str(tmp_path / "log")))
    started = time.monotonic()
    reply, outputs = kernel.execute("%pmap --bg -n 2 -o squares work range(12)")
    assert reply["status"] == "ok" and time.monotonic() - started < 1.5
    assert "running in the background" in "".join(text for _, text in outputs)
    assert kernel.text("print(1 + 1)") == "2\n"  # the notebook is free
    assert kernel.text("print('squares' in dir())") == "False\n"
    shown = kernel.text("_parmap.wait(30)\nprint(squares == [x * x for x in range(12)], "
                        "_parmap.status)")
    assert shown == "True done\n"


def test_bg_cancel_stops_the_workers_and_keeps_results(kernel, tmp_path):
    kernel.text(WORK.format(log=str(tmp_path / "log")))
    kernel.text("run = %pmap --bg -n 2 --batch-size 1 work range(200)")
    time.sleep(1.5)
    started = time.monotonic()
    shown = kernel.text("run.cancel()\nprint(run.status, 0 < run.n_finished < 200)")
    assert shown == "cancelled True\n"
    assert time.monotonic() - started < 3
    reply, _ = kernel.execute("run.result()")
    assert reply["status"] == "error" and reply["ename"] == "RunCancelled"
    assert kernel.text("%pmap -n 2 abs [-1, -2]").strip() == "[1, 2]"
    assert len(kernel.workers()) <= 2


def test_interrupting_another_cell_leaves_the_bg_run_going(kernel, tmp_path):
    kernel.text(WORK.format(log=str(tmp_path / "log")))
    kernel.text("run = %pmap --bg -n 2 work range(12)")
    reply, answered_in = kernel.interrupt_after("import time\ntime.sleep(30)", seconds=1.0)
    assert reply["ename"] == "KeyboardInterrupt" and answered_in < 2
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
