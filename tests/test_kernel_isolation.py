"""Runs are independent: whatever happens to a foreground run (a failing
item, an interrupt, a worker crash, an item stopped at its time limit) does
not touch a background run going on beside it, in a live kernel."""

import signal

import pytest
from kernel import parmagic_kernel
from waiting import until

# Background items wait for a file the test creates once the foreground run
# has done its damage, so they are surely running while it happens.
SETUP = '''
import os, signal, time
GO, STARTED = {go!r}, {started!r}

def gated(x):
    with open(STARTED, "a") as log:
        log.write(f"{{x}}\\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(GO) and time.monotonic() < deadline:
        time.sleep(0.02)
    return x * x

def fails(x):
    raise ValueError(f"bad {{x}}")

def sleeps(x):
    time.sleep(x)
    return x

def deaf(x):
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})  # ignores its time limit
    time.sleep(x)
    return x
'''

FOREGROUND = {
    "a failing item": ("%pmap -n 2 --no-progress fails range(4)", "ValueError"),
    "a worker crash": ("%pmap -n 2 --no-progress (lambda x: os._exit(3)) range(2)",
                       "WorkerCrashError"),
}
if hasattr(signal, "pthread_sigmask"):  # the item that ignores its limit needs it
    FOREGROUND["a time limit"] = ("%pmap -n 2 --no-progress --timeout 0.3 deaf [30, 30]",
                                  "ItemTimeoutError")


@pytest.fixture
def kernel():
    with parmagic_kernel() as live:
        yield live


def start_background(kernel, tmp_path):
    go, started = tmp_path / "go", tmp_path / "started"
    kernel.text(SETUP.format(go=str(go), started=str(started)))
    kernel.text("run = %pmap --bg -n 2 --batch-size 1 gated range(12)")
    until(lambda: started.exists() and len(started.read_text().split()) >= 2,
          "the background run to start its items", every=0.05)
    return go


def assert_background_finishes_whole(kernel, go):
    go.touch()
    shown = kernel.text(
        "run.wait(60)\n"
        "print(run.status, run.results == [x * x for x in range(12)], dict(run.errors))"
    )
    assert shown == "done True {}\n"


@pytest.mark.parametrize("what", sorted(FOREGROUND))
def test_a_failed_foreground_run_leaves_the_background_run_alone(kernel, tmp_path, what):
    go = start_background(kernel, tmp_path)
    code, error = FOREGROUND[what]
    reply, _ = kernel.execute(code)
    assert (reply["status"], reply["ename"]) == ("error", error)
    assert_background_finishes_whole(kernel, go)
    assert kernel.text("after = %pmap -n 2 --no-progress abs [-1, -2]\nprint(after)") == "[1, 2]\n"


def test_an_interrupted_foreground_run_leaves_the_background_run_alone(kernel, tmp_path):
    go = start_background(kernel, tmp_path)
    reply, _ = kernel.interrupt_after("%pmap -n 2 --no-progress sleeps [30, 30, 30]", 1.5)
    assert (reply["status"], reply["ename"]) == ("error", "KeyboardInterrupt")
    assert_background_finishes_whole(kernel, go)


def test_a_foreground_call_does_not_queue_behind_a_background_run(kernel, tmp_path):
    go = start_background(kernel, tmp_path)  # both of its workers are now busy
    shown = kernel.text("meanwhile = %pmap -n 2 --no-progress abs [-1, -2, -3]\n"
                        "print(meanwhile, run.status)")
    assert shown == "[1, 2, 3] running\n"
    assert_background_finishes_whole(kernel, go)
