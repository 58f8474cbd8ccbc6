"""``--init SETUP`` in a live kernel: the issue's example of a slow model
loaded once per worker, and a failing SETUP as the user reads it."""


import pytest
from kernel import parmagic_kernel, shown_traceback


NOTEBOOK = '''
import os, time
SETUP_LOG = {log!r}

def setup_model():
    global MODEL
    with open(SETUP_LOG, "a") as log:  # one line per SETUP call
        log.write(f"{{os.getpid()}}\\n")
    time.sleep(1)  # loading a model takes a while
    MODEL = {{"w": 3}}

def predict(x):
    return MODEL["w"] * x, os.getpid()

def setup_broken():
    weights = None
    return weights["w"]
'''


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return tmp_path_factory.mktemp("init") / "setup.log"


@pytest.fixture(scope="module")
def kernel(log):
    with parmagic_kernel(NOTEBOOK.format(log=str(log))) as live:
        yield live


def test_setup_runs_once_per_worker_and_the_notebook_keeps_its_namespace(kernel, log):
    shown = kernel.text(
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    out = %pmap -n 2 --no-progress --init setup_model predict range(40)\n"
        "print([value for value, _ in out] == [3 * x for x in range(40)])\n"
        "print(sorted({pid for _, pid in out}))\n"
        "print('MODEL' in globals(), [str(w.message) for w in caught])\n"
    )
    results_right, workers, rest = shown.splitlines()
    assert results_right == "True"
    calls = sorted(int(line) for line in log.read_text().split())
    assert str(calls) == workers  # once in each worker that ran items, and no more
    assert 1 <= len(calls) <= 2
    assert rest == "False []"  # no MODEL in the notebook, no warning


def test_a_failing_setup_is_a_clear_error_and_the_next_run_works(kernel):
    reply, outputs = kernel.execute("%pmap -n 2 --no-progress --init setup_broken predict range(40)")
    assert reply["status"] == "error" and reply["ename"] == "TypeError"
    shown = shown_traceback(reply)
    assert "parmagic: SETUP setup_broken failed in a worker; 40 items were not run" in shown
    assert 'return weights["w"]' in shown  # SETUP's own line from its cell
    assert "worker.py" not in shown and "joblib" not in shown and "loky" not in shown
    again = kernel.text("out = %pmap -n 2 --no-progress --init setup_model predict range(4)\n"
                        "print([value for value, _ in out])")
    assert again == "[0, 3, 6, 9]\n"
