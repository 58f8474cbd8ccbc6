"""Writes the demo notebooks from the cells below (run it after editing).

A cell is (kind, source) or (kind, source, tags); the tag
"raises-exception" marks a cell that shows an error on purpose.
"""

from pathlib import Path

import nbformat

QUICKSTART = [
    ("markdown", "# parmagic quickstart\n\nLoad the extension, then map functions over "
     "iterables on all cores with one line."),
    ("code", "%load_ext parmagic"),
    ("code", "def square(x):\n    return x * x\n\nsquares = %pmap square range(10)\nsquares"),
    ("markdown", "Lambdas work too: in brackets, or with commas between FUNC and ITERABLE. "
     "Several iterables are zipped, as with `map`."),
    ("code", "%pmap (lambda x: x ** 2) range(5)"),
    ("code", "%pmap pow, range(5), [3] * 5"),
    ("markdown", "`%%parmap` runs the cell, then maps the last function it defines. "
     "`-o` also binds the results to a name."),
    ("code", "%%parmap -n 2 -o slow_squares range(6)\nimport time\n\n"
     "def slow_square(x):\n    time.sleep(0.2)\n    return x * x"),
    ("code", "slow_squares"),
    ("markdown", "Every run leaves its record in `_parmap`."),
    ("code", "_parmap"),
    ("markdown", "The classic pitfall: a function that changes a global. Each worker "
     "process changes its own copy, so the change is lost. parmagic says so."),
    ("code", "A = [0, 0, 0, 0]\n\ndef update_array(i):\n    global A\n    A[i] = i\n\n"
     "%pmap update_array range(4)"),
    ("code", "A"),
    ("markdown", "The fix is to return the value and use the list that comes back."),
    ("code", "def update_array2(i):\n    return i\n\nA = %pmap update_array2 range(4)\nA"),
    ("markdown", "`-t` says where the time went, and what to change when parallelism "
     "does not pay. `_parmap.timeline()` draws what each worker did."),
    ("code", "def busy(n):\n    total = 0\n    for i in range(n):\n        total += i * i\n"
     "    return total\n\nsums = %pmap -t -n 2 busy [3_000_000]*8"),
    ("code", "_parmap.timeline();"),
    ("code", "%pmap -t -n 2 slow_square range(6)"),
    ("markdown", "Mistakes are one-line `UsageError`s; nothing in the namespace changes."),
    ("code", "%pmap square 42", ["raises-exception"]),
]

WHEN_THINGS_GO_WRONG = [
    ("markdown", "# When things go wrong\n\nWhat parmagic shows when items print, fail, "
     "hang or crash, and what it keeps."),
    ("code", "%load_ext parmagic\nimport os, sys, time, threading, ctypes\n\n"
     "def inv(x):\n    return 1 / x\n\n"
     "def slow(seconds):\n    time.sleep(seconds)\n    return seconds"),
    ("markdown", "What the items print appears in item order, as if the map ran serially, "
     "even though later items finish first here. Each item's output is also kept."),
    ("code", "def chatty(x):\n    time.sleep(0.1 * (4 - x))\n    print(f'item {x} done')\n"
     "    return x\n\n%pmap -n 2 --no-progress chatty range(4)"),
    ("code", "_parmap.outputs"),
    ("markdown", "A failing item raises its own exception. The traceback shows your line, "
     "and a note names the item and says how many results were kept."),
    ("code", "%pmap -n 2 inv [1, 2, 0, 4]", ["raises-exception"]),
    ("code", "_parmap"),
    ("code", "_parmap.results"),
    ("markdown", "`--on-error collect` runs every item, then reports all failures together."),
    ("code", "%pmap -n 2 --on-error collect inv [1, 0, 2, 0, 0, 0, 4]", ["raises-exception"]),
    ("markdown", "`--timeout S` stops an item that runs too long and names it."),
    ("code", "%pmap -n 2 --timeout 1 slow [0.1, 30, 0.2]", ["raises-exception"]),
    ("markdown", "A worker that crashes (here a segmentation fault) is an error naming the "
     "items it was running. The kernel survives and the next call gets fresh workers. "
     "The dying worker's own report (\"Fatal Python error: Segmentation fault\" and its "
     "stack) goes to the terminal that started Jupyter, not to the notebook: here it is "
     "expected."),
    ("code", "def crash(x):\n    if x == 2:\n        ctypes.string_at(0)\n    return x\n\n"
     "%pmap -n 2 crash range(4)", ["raises-exception"]),
    ("code", "%pmap -n 2 abs [-1, -2, -3]"),
    ("markdown", "A function that uses something that cannot be pickled cannot go to a "
     "worker process: the error names it. Threads need no pickling."),
    ("code", "lock = threading.Lock()\n\ndef locked(x):\n    with lock:\n        return x\n\n"
     "%pmap -n 2 locked [1, 2]", ["raises-exception"]),
    ("code", "%pmap -n 2 -b threading locked [1, 2]"),
    ("markdown", "Runs longer than a second get a progress bar (`--no-progress` or "
     "`%config ParMagic.progress = False` turn it off)."),
    ("code", "%pmap -n 2 slow [0.3]*8"),
]

DASK = [
    ("markdown", "# Beyond one machine: dask\n\nThe same magic runs on a dask.distributed "
     "cluster. Here the cluster is local (two worker processes); with a real one, pass its "
     "address to `Client(...)` or to `--scheduler`."),
    ("code", "%load_ext parmagic\nfrom distributed import Client, LocalCluster\n\n"
     "cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,\n"
     "                       host='127.0.0.1', dashboard_address=':0')\n"
     "client = Client(cluster)"),
    ("markdown", "`-b dask` runs on the notebook's active client. Functions and lambdas defined "
     "here travel to the workers; the results come back in order."),
    ("code", "def square(x):\n    return x * x\n\n%pmap -b dask square range(10)"),
    ("markdown", "What the items print comes back to the notebook, in item order."),
    ("code", "def where(x):\n    print(f'item {x} ran on a worker')\n"
     "    return x\n\nfound = %pmap -b dask --no-progress where range(3)"),
    ("markdown", "A failing item names itself, as on one machine."),
    ("code", "def inv(x):\n    return 1 / x\n\n%pmap -b dask inv [1, 0, 2]",
     ["raises-exception"]),
    ("markdown", "`--scheduler ADDRESS` connects to a scheduler by address instead "
     "(`%config ParMagic.scheduler = ...` sets a default)."),
    ("code", "%pmap --scheduler {cluster.scheduler_address} square range(5)"),
    ("code", "_parmap"),
    ("code", "client.close()\ncluster.close()"),
]

LONG_RUNS = [
    ("markdown", "# Long runs: a cache to resume from, and runs in the background"),
    ("code", "%load_ext parmagic\nimport tempfile, time\n\ncache = tempfile.mkdtemp()\n\n"
     "def slow_square(x):\n    time.sleep(0.25)\n    return x * x"),
    ("markdown", "`--cache DIR` stores each result as it arrives. Run it, interrupt it, "
     "restart the kernel even: the next run takes what is there and computes the rest."),
    ("code", "first = %pmap -n 2 --cache {cache} slow_square range(8)\n_parmap"),
    ("code", "more = %pmap -n 2 --cache {cache} slow_square range(12)\n_parmap"),
    ("markdown", "Changing the function (or a global it reads) starts afresh."),
    ("code", "def slow_square(x):\n    time.sleep(0.25)\n    return x * x + 1\n\n"
     "changed = %pmap -n 2 --cache {cache} slow_square range(4)\n"
     "print(changed, _parmap.n_cached, 'from the cache')"),
    ("markdown", "`--bg` returns at once with a handle; the notebook stays free. "
     "`-o` binds the results when the run has finished."),
    ("code", "run = %pmap --bg -n 2 -o squares slow_square range(12)\nrun"),
    ("code", "print('meanwhile, the notebook answers:', 6 * 7)"),
    ("code", "run.wait()\nprint(squares)\nrun"),
    ("markdown", "`cancel()` stops a background run; what finished is kept."),
    ("code", "run = %pmap --bg -n 2 slow_square range(100)\ntime.sleep(1)\nrun.cancel()\n"
     "print(run.status, run.n_finished, 'of 100 finished')"),
    ("markdown", "`--init SETUP` runs `SETUP()` once in each worker before its first item: "
     "load a model once per worker, not once per item. What SETUP assigns with "
     "`global` is there for the function in that worker; the notebook's namespace "
     "is left alone."),
    ("code", "import os\n\ndef load_model():\n    global MODEL\n"
     "    time.sleep(1)  # something slow: reading weights, opening a connection\n"
     "    MODEL = {'w': 3, 'loaded_by': os.getpid()}\n\n"
     "def predict(x):\n    return MODEL['w'] * x, MODEL['loaded_by']\n\n"
     "predictions = %pmap -n 2 --no-progress --init load_model predict range(40)\n"
     "print([p for p, _ in predictions[:5]], len({pid for _, pid in predictions}), "
     "'workers loaded it;', 'MODEL' in globals())"),
    ("markdown", "`--retries N` runs an item that failed again, up to N more times, and "
     "`--retry-on` says which exceptions are worth it (a worker that crashed counts too, "
     "unless `--retry-on` leaves `WorkerCrashError` out)."),
    ("code", "first_try = tempfile.mkdtemp()\n\n"
     "def flaky(x):  # every third item fails on its first attempt\n"
     "    marker = os.path.join(first_try, str(x))\n"
     "    if x % 3 == 0 and not os.path.exists(marker):\n"
     "        open(marker, 'w').close()\n"
     "        raise ConnectionError(f'no answer for {x}')\n"
     "    return x * 10\n\n"
     "values = %pmap -n 2 --no-progress --retries 2 --retry-on ConnectionError flaky range(6)\n"
     "print(values, _parmap.attempts)"),
]

NOTEBOOKS = {
    "quickstart.ipynb": QUICKSTART,
    "when_things_go_wrong.ipynb": WHEN_THINGS_GO_WRONG,
    "dask.ipynb": DASK,
    "long_runs.ipynb": LONG_RUNS,
}

# What demos/run.py says before running a notebook, when the kernel's
# processes print something that is not a cell's output on purpose.
NOTES = {
    "when_things_go_wrong.ipynb": (
        "A worker crashes on purpose in this notebook: the \"Fatal Python error: "
        "Segmentation fault\" report printed while it runs comes from that worker "
        "and is expected."),
}


def build(cells, name):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python"}
    if name in NOTES:
        notebook.metadata["parmagic_demo"] = {"note": NOTES[name]}
    for number, (kind, source, *tags) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source, id=f"cell-{number}"))  # stable ids, quiet diffs
        if tags:
            notebook.cells[-1].metadata["tags"] = tags[0]
    path = Path(__file__).with_name(name)
    nbformat.write(notebook, path)
    return path


if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        print(build(cells, name))
