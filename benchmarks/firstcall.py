"""The first call in a fresh Python process: a notebook's functions defined,
the tool imported (for parmagic: ``%load_ext parmagic``), one second of the
user reading the screen, then the first 4-item map, pool start included.

Each run also reports the worker processes alive at its end, so the parent
can check none outlive the process that started them.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent

# tool -> (set-up, untimed but reported; the first call; clean-up)
FIRST_CALLS = {
    "joblib": (
        "import joblib",
        "joblib.Parallel(n_jobs=2)(joblib.delayed(identity)(x) for x in TINY4)",
        "",
    ),
    "mp.Pool (fork)": (
        "import multiprocessing as mp",
        "(pool := mp.get_context('fork').Pool(2)).map(identity, TINY4)",
        "pool.terminate()",
    ),
    "ProcessPoolExecutor (fork)": (
        "import concurrent.futures as cf, multiprocessing as mp",
        "list((pool := cf.ProcessPoolExecutor(2, mp_context=mp.get_context('fork')))"
        ".map(identity, TINY4))",
        "pool.shutdown()",
    ),
    "mpire": (
        "from mpire import WorkerPool",
        "(pool := WorkerPool(n_jobs=2, keep_alive=True)).map(identity, TINY4, progress_bar=False)",
        "pool.terminate()",
    ),
    "parmagic.pmap": (
        "import parmagic",
        "parmagic.pmap(identity, TINY4, n_jobs=2)",
        "",
    ),
    "%pmap": (
        "notebook.shell.run_line_magic('load_ext', 'parmagic')",
        "notebook.pmap_magic('identity', 'TINY4')",
        "",
    ),
}

SCRIPT = """
import json, sys, time
sys.path.insert(0, {here!r})
from notebook import Notebook
notebook = Notebook(load_parmagic=False)
notebook.run("TINY4 = list(range(4))")
globals().update(identity=notebook.ns["identity"], TINY4=notebook.ns["TINY4"])
started = time.perf_counter()
{setup}
setup = time.perf_counter() - started
time.sleep(1.0)
started = time.perf_counter()
result = {call}
first = time.perf_counter() - started
assert list(result) == [0, 1, 2, 3], result
{cleanup}
import psutil
children = [p.pid for p in psutil.Process().children(recursive=True)]
print(json.dumps({{"setup": setup, "first": first, "children": children}}))
"""


def run_once(tool):
    setup, call, cleanup = FIRST_CALLS[tool]
    script = SCRIPT.format(here=str(HERE), setup=setup, call=call, cleanup=cleanup)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode:
        raise RuntimeError(f"first call of {tool} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def survivors(pids, grace=3.0):
    """The pids among ``pids`` still alive ``grace`` seconds from now."""
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _running(pid)]
    return alive


def _running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def measure(repeats):
    """{tool: {"first": median s, "setup": median s, "left": pids alive after
    exit}}, in rounds that take every tool in turn."""
    runs = {tool: [] for tool in FIRST_CALLS}
    left = {tool: [] for tool in FIRST_CALLS}
    for round_ in range(repeats):
        for tool in FIRST_CALLS:
            run = run_once(tool)
            runs[tool].append(run)
            if round_ == 0:
                left[tool] = survivors(run["children"])
    return {
        tool: {
            "first": statistics.median(run["first"] for run in values),
            "setup": statistics.median(run["setup"] for run in values),
            "left": left[tool],
        }
        for tool, values in runs.items()
    }
