"""What a notebook user sees when a parallel map goes wrong, in a live
ipykernel: every case checks the message, then that the kernel lives, the
next %pmap works, and no stray worker process or temporary file is left."""

import re

import pytest
from kernel import parmagic_kernel, shown_traceback
from platforms import needs_posix


HELPERS = '''
import os, sys, time, signal, threading, ctypes
import numpy as np

def inv(x):
    return 1 / x

def slow(seconds):
    time.sleep(seconds)
    return seconds

def noisy(x):
    time.sleep(0.05 * (4 - x))  # later items finish first
    print(f"start {x}")
    print(f"warn {x}", file=sys.stderr)
    print(f"end {x}")
    return x

def crash(how):
    if how == "segfault":
        ctypes.string_at(0)
    if how == "os._exit":
        os._exit(1)
    if how == "sys.exit":
        sys.exit(3)
    if how == "MemoryError":
        bytearray(1 << 60)
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    return how

lock = threading.Lock()

def uses_lock(x):
    with lock:
        return x

def makes_lock(x):
    return threading.Lock()

def mean_of(array):
    return float(array.mean())

def outer(x):
    import parmagic
    return parmagic.pmap(abs, [x, -x])
'''


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel(HELPERS) as live:
        yield live


def error_of(kernel, code, timeout=60):
    reply, outputs = kernel.execute(code, timeout=timeout)
    assert reply["status"] == "error", outputs
    return reply


def assert_recovered(kernel):
    """The kernel answers, the pool works, nothing is left behind."""
    # --no-progress: a pool restarted after a crash may take over a second to
    # answer, and the bar would then be part of the text
    assert kernel.text("%pmap -n 2 --no-progress abs [-1, -2, -3]").strip() == "[1, 2, 3]"
    workers = kernel.workers()
    assert len(workers) <= 2, workers  # the warm pool, nothing more
    left = kernel.leftovers()
    assert left["sockets"] == [], left  # every worker connected, or its folder went
    assert len(left["store"]) <= 1, left  # the one store (its files are kept for reuse)


def test_failing_item_names_the_item_keeps_results_and_shows_user_code(kernel):
    reply = error_of(kernel, "%pmap -n 2 inv [1, 2, 0, 4]")
    assert reply["ename"] == "ZeroDivisionError"
    text = shown_traceback(reply)
    assert "return 1 / x" in text
    assert "item 2 (0) failed" in text
    assert "joblib" not in text and "loky" not in text
    finished = re.search(r"(\d) of 4 results had finished", text).group(1)
    shown = kernel.text("print(_parmap.results, list(_parmap.errors), _parmap.n_finished)")
    assert shown.startswith("[1.0, 0.5, <not computed>, ")
    assert shown.endswith(f" [2] {finished}\n")
    assert kernel.text("print(repr(_parmap.errors[2]))").startswith(
        "ItemError(index=2, item=0, exception=ZeroDivisionError")
    assert_recovered(kernel)


def test_failure_stops_the_run_without_starting_the_remaining_items(kernel):
    kernel.text("started = []\ndef fails_first(x):\n    if x == 0:\n        raise ValueError('bad first item')\n    time.sleep(0.2)\n    return x\n")
    reply = error_of(kernel, "%pmap -n 2 --batch-size 1 fails_first range(40)")
    assert reply["ename"] == "ValueError"
    read = int(kernel.text("print(len(_parmap.results))"))
    assert read < 10  # only what was already queued for the two workers
    assert_recovered(kernel)


def test_collect_runs_every_item_and_raises_a_group(kernel):
    reply, outputs = kernel.execute("%pmap -n 2 --on-error collect inv [1, 0, 2, 0, 0, 0, 4]")
    assert reply["status"] == "error" and reply["ename"] == "ExceptionGroup"
    assert "4 of 7 items failed" in reply["evalue"]
    assert "1 more are in _parmap.errors" in reply["evalue"]
    text = "".join(text for kind, text in outputs if kind == "traceback")
    assert "item 1 (0) failed" in text and "item 3 (0) failed" in text
    assert "item 4 (0) failed" in text and "item 5 (0)" not in text
    assert text.count("return 1 / x") == 3  # once per failure shown
    for internal in ("parmagic/", "interactiveshell.py", "site-packages"):
        assert internal not in text, text
    shown = kernel.text("print(_parmap.results[0], _parmap.results[2], _parmap.results[6], sorted(_parmap.errors))")
    assert shown == "1.0 0.5 0.25 [1, 3, 4, 5]\n"
    assert_recovered(kernel)


def test_worker_output_is_shown_in_item_order_and_kept_per_item(kernel):
    reply, outputs = kernel.execute("%pmap -n 2 noisy range(4)")
    assert reply["status"] == "ok"
    stdout = "".join(text for kind, text in outputs if kind == "stdout")
    stderr = "".join(text for kind, text in outputs if kind == "stderr")
    assert stdout == "".join(f"start {i}\nend {i}\n" for i in range(4))
    assert stderr == "".join(f"warn {i}\n" for i in range(4))
    assert kernel.text("print(repr(_parmap.outputs[2]))") == "'start 2\\nwarn 2\\nend 2\\n'\n"
    assert_recovered(kernel)


def test_interrupt_stops_within_two_seconds_and_keeps_results(kernel):
    reply, answered_in = kernel.interrupt_after("%pmap -n 2 slow [0.5]*40", seconds=2.5)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert answered_in < 2
    assert "interrupted" in shown_traceback(reply)
    shown = kernel.text("print(_parmap.status, _parmap.n_finished)")
    status, finished = shown.split()
    assert status == "interrupted" and 2 <= int(finished) < 40
    assert_recovered(kernel)


@needs_posix("SIGALRM, by which a worker stops the item where it is")
def test_timeout_names_the_item_and_the_pool_stays_usable(kernel):
    reply = error_of(kernel, "%pmap -n 2 --timeout 1 slow [0.1, 30, 0.2]", timeout=20)
    assert reply["ename"] == "ItemTimeoutError"
    assert "1 s time limit" in reply["evalue"]
    text = shown_traceback(reply)
    assert "item 1 (30) failed" in text and "time.sleep(seconds)" in text
    assert_recovered(kernel)


@pytest.mark.parametrize(
    "how, ename, says",
    [
        pytest.param("segfault", "WorkerCrashError", "segmentation fault",
                     marks=needs_posix("SIGSEGV as the signal a segfault ends a worker with")),
        ("os._exit", "WorkerCrashError", "EXIT(1)"),
        pytest.param("killed", "WorkerCrashError", "too much memory",
                     marks=needs_posix("SIGKILL sent with os.kill")),
        ("sys.exit", "ItemExitError", "sys.exit(3)"),
        ("MemoryError", "MemoryError", "bytearray(1 << 60)"),  # the line that failed
    ],
)
def test_worker_crash_is_a_clear_error_and_the_kernel_lives(kernel, how, ename, says):
    reply = error_of(kernel, f"%pmap -n 2 crash ['fine', 'fine', {how!r}, 'fine']")
    assert reply["ename"] == ename
    assert says in shown_traceback(reply)  # ends with "ename: evalue", as the user reads it
    if ename == "WorkerCrashError":  # names every item in flight, item 2 among them
        named = re.search(r"running items? ([\d, ]+)", reply["evalue"]).group(1)
        assert "2" in named.split(", ")
    else:
        assert "item 2 ('" in shown_traceback(reply)
    # every item that is not reported as failed has its result
    shown = kernel.text(
        "print(2 in _parmap.errors, all(_parmap.results[i] == 'fine' "
        "for i in range(4) if i not in _parmap.errors))"
    )
    assert shown == "True True\n"
    assert_recovered(kernel)


def test_unpicklable_function_names_the_global_and_suggests_threads(kernel):
    reply = error_of(kernel, "%pmap -n 2 uses_lock [1, 2]")
    assert reply["ename"] == "NotPicklableError"
    assert "the global 'lock'" in reply["evalue"] and "-b threading" in reply["evalue"]
    assert kernel.text("%pmap -n 2 --no-progress -b threading uses_lock [1, 2]").strip() == "[1, 2]"
    assert_recovered(kernel)


def test_unpicklable_item_and_result_name_the_item(kernel):
    reply = error_of(kernel, "%pmap -n 2 len [[1], (i for i in range(3)), [2, 3]]")
    assert reply["ename"] == "NotPicklableError"
    assert "item 1 (<generator object" in reply["evalue"]
    reply = error_of(kernel, "%pmap -n 2 makes_lock [1, 2]")
    assert reply["ename"] == "NotPicklableError"
    assert "the result, a lock" in reply["evalue"] and "-b threading" in reply["evalue"]
    assert re.search(r"item [01] \([12]\) failed", shown_traceback(reply))
    assert_recovered(kernel)


def test_large_arrays_reach_the_workers_through_the_store(kernel):
    shown = kernel.text("%pmap -n 2 --no-progress mean_of [np.ones(2_000_000)]*4")
    assert shown.strip() == "[1.0, 1.0, 1.0, 1.0]"
    (files,) = kernel.leftovers()["store"].values()  # the four items are one version
    assert len(files) == 1, files  # (removed with the store when the kernel exits)
    assert_recovered(kernel)


def test_nested_pmap_runs_without_hanging(kernel):
    shown = kernel.text("%pmap -n 2 --no-progress outer range(3)", timeout=60)
    assert shown.strip() == "[[0, 0], [1, 1], [2, 2]]"
    shown = kernel.text("%pmap -n 2 --no-progress -b threading outer range(3)", timeout=60)
    assert shown.strip() == "[[0, 0], [1, 1], [2, 2]]"
    assert_recovered(kernel)


def test_progress_bar_is_a_widget_for_long_runs_only(kernel):
    reply, outputs = kernel.execute("%pmap -n 2 slow [0.4]*8")
    assert reply["status"] == "ok"
    bars = [text for kind, text in outputs if kind == "widget"]
    assert len(bars) == 1 and "item" in bars[0]
    # a short run is one that ends before the bar's delay, however slow the machine
    kernel.text("import parmagic.display.progress\ndelay, parmagic.display.progress.AUTO_DELAY = "
                "parmagic.display.progress.AUTO_DELAY, 60")
    reply, outputs = kernel.execute("%pmap -n 2 slow [0.01]*8")
    kernel.text("parmagic.display.progress.AUTO_DELAY = delay")
    assert reply["status"] == "ok"
    assert not [kind for kind, _ in outputs if kind == "widget"]
    for switch_off in ("%pmap -n 2 --no-progress slow [0.4]*8",
                       "%config ParMagic.progress = False\n%pmap -n 2 slow [0.4]*8"):
        reply, outputs = kernel.execute(switch_off)
        assert reply["status"] == "ok"
        assert not [kind for kind, _ in outputs if kind == "widget"]
    kernel.text("%config ParMagic.progress = True")
    reply, outputs = kernel.execute("%pmap -n 2 --progress abs [1, 2]")
    assert [kind for kind, _ in outputs if kind == "widget"]


def test_record_has_text_and_html_reprs(kernel):
    error_of(kernel, "%pmap -n 2 --on-error collect inv [1, 0, 2]")
    reply, outputs = kernel.execute("_parmap")
    data = kernel.displays[-1]
    assert "parmap run of inv: failed" in data["text/plain"]
    assert "1 failed" in data["text/plain"] and "worker CPU" in data["text/plain"]
    html = data["text/html"]
    assert "<table>" in html and "failed" in html and "item 1 (0)" in html
