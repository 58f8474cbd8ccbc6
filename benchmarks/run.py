"""``make bench``: parmagic against the serial loop, raw joblib, fork-based
multiprocessing.Pool and ProcessPoolExecutor, and mpire, mapping functions
defined in a notebook (a real IPython shell) over the notebook's data.

Every pool is warm before it is timed (except in the first-call row, which
starts a fresh Python process per run), each number is the median of
interleaved repeats, and every ratio is measured in this same run. Prints a
table and writes benchmarks/RESULTS.md. ``BENCH_REPEATS=1`` for a quick try;
``BENCH_CASES=tiny,global`` times only the rows whose names contain one of
those words, prints them and writes nothing.
"""

import collections
import contextlib
import os
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import firstcall  # noqa: E402
import report  # noqa: E402
import workloads  # noqa: E402
from notebook import Notebook  # noqa: E402
from peers import PEERS, SERIAL, Peers  # noqa: E402

QUICK = os.environ.get("BENCH_REPEATS")
ONLY = [word for word in os.environ.get("BENCH_CASES", "").lower().split(",") if word]


@dataclass
class Case:
    name: str
    unit: str  # "ms", or "µs/item"
    func: str  # a function name in the notebook
    items: str  # an expression typed in the notebook
    size: int
    repeats: int
    warm_up: bool = True
    # a cell run, untimed, before each call (each tool meets a new version of
    # the data: parmagic.pmap and %pmap share a store), and the expected results
    before_each: str = ""
    expect: str = ""
    # peers over 3x the best peer's time in the first round run only once:
    # they cannot be the best peer, and a 10**6-item round of them takes 20 s
    trim_slow_peers: bool = False
    # timed to the first result of each tool's iterator (a pool's others are
    # taken, untimed, so that it is idle again before the next tool)
    first_result: bool = False

    @property
    def n_repeats(self):
        return min(self.repeats, int(QUICK)) if QUICK else self.repeats


CASES = [
    Case("4 tiny items, warm", "ms", "identity", "TINY4", 4, 15),
    Case("10,000 tiny items", "ms", "identity", "TINY10K", 10_000, 7),
    Case("10,000 tiny items, module function", "ms", "module_identity", "TINY10K", 10_000, 5),
    Case("1,000,000 tiny items, list", "µs/item", "identity", "TINY1M", 10**6, 3, warm_up=False,
         trim_slow_peers=True),
    Case("1,000,000 tiny items, generator", "µs/item", "identity",
         "(i for i in range(1_000_000))", 10**6, 3, warm_up=False, trim_slow_peers=True),
    Case("8 CPU tasks of 0.2 s", "ms", "cpu_task", "CPU_ITEMS", 8, 3),
    Case("8 numpy arrays of 8 MB as items", "ms", "array_sum", "ARRAYS", 8, 5),
    Case("200 MB numpy global, 8 items, unchanged (repeated call)", "ms",
         "read_big", "EIGHT", 8, 5),
    Case("~200 MB DataFrame global, 8 items, unchanged", "ms", "read_frame", "EIGHT", 8, 2),
    Case("time to the first result of 1,000 items of 20 ms", "ms", "sleep20", "THOUSAND",
         1000, 3, first_result=True),
    # last: a fork pool sees stale data from here on
    Case("200 MB numpy global, 8 items, after `BIG += 1`", "ms", "read_big", "EIGHT", 8, 4,
         before_each="BIG += 1", expect="[float(BIG.sum()) + i for i in EIGHT]"),
]
STALE_CASE = CASES[-1].name
FIRST_CALL_REPEATS = 3


def interleaved_medians(notebook, tools, case):
    """({tool: median seconds}, {tool: True if its results were the serial
    loop's}, {tools timed once}): an optional warm-up call each, then rounds
    in which every tool runs once, so drift in the machine's speed affects
    all alike."""
    times = {tool: [] for tool in tools}
    correct, once = {}, set()
    for round_ in range(case.n_repeats + case.warm_up):
        for tool in tools:  # the serial loop first: its results are the expected ones
            if tool in once:
                continue
            if case.before_each:
                notebook.run(case.before_each)
                expected = notebook.evaluate(case.expect)
            started = time.perf_counter()
            result = tools[tool](case.func, case.items, case.size)
            if case.first_result:  # the first results are compared
                result = iter(result)
                first = next(result)
                elapsed = time.perf_counter() - started
                if tool != SERIAL:  # (a map stops here; a pool must be idle again)
                    collections.deque(result, maxlen=0)
                result = [first]
            else:
                elapsed = time.perf_counter() - started
            result = list(result)
            expected = result if tool == SERIAL and not case.expect else expected
            correct[tool] = correct.get(tool, True) and result == expected
            if round_ or not case.warm_up:
                times[tool].append(elapsed)
        if case.trim_slow_peers and not once and case.n_repeats > 1:
            once = slow_peers(times)
    medians = {tool: statistics.median(values) for tool, values in times.items()}
    return medians, correct, once


def slow_peers(times, factor=3):
    best = min(times[peer][0] for peer in PEERS)
    return {peer for peer in PEERS if times[peer][0] > factor * best}


def generator_memory(notebook):
    """Peak traced growth (bytes) in this process while the serial loop,
    ``list(generator)`` and ``%pmap`` consume a generator of 10**6 items."""
    source = "(i for i in range(1_000_000))"
    runs = {
        "serial loop": lambda: [notebook.ns["identity"](i) for i in notebook.evaluate(source)],
        "materialised input": lambda: list(notebook.evaluate(source)),
        "%pmap": lambda: notebook.pmap_magic("identity", source),
    }
    peaks = {}
    for name, run in runs.items():
        tracemalloc.start()
        try:
            run()
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return peaks


def measure_warm(notebook, tools, first_tools):
    table, correct, once = {}, {}, {}
    for case in CASES:
        if ONLY and not any(word in case.name.lower() for word in ONLY):
            continue
        started = time.perf_counter()
        with quiet():
            table[case.name], correct[case.name], once[case.name] = interleaved_medians(
                notebook, first_tools if case.first_result else tools, case)
        print(f"  {case.name} ({time.perf_counter() - started:.0f} s)", flush=True)
        for tool, seconds in table[case.name].items():
            flag = "" if correct[case.name][tool] else "  (wrong or stale results)"
            flag += "  (timed once)" if tool in once[case.name] else ""
            print(f"    {tool:<28} {seconds * 1e3:10.2f} ms{flag}", flush=True)
    return table, correct, once


@contextlib.contextmanager
def quiet():
    """Progress bars to /dev/null: drawn (a default feature) but not shown."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        yield


def main():
    started = time.perf_counter()
    notebook = Notebook()
    notebook.define_data()
    notebook.define_cpu_items()
    notebook.ns["module_identity"] = workloads.identity
    peers = Peers(notebook)  # fork pools start after the data exists
    try:
        tools = peers.tools()
        print(f"warm runs ({len(tools)} tools):", flush=True)
        table, correct, once = measure_warm(notebook, tools, peers.first_tools())
        if ONLY:
            return
        memory_started = time.perf_counter()
        with quiet():
            memory = generator_memory(notebook)
        print(f"memory, 10**6 items from a generator "
              f"({time.perf_counter() - memory_started:.0f} s):",
              {name: f"{peak / 2**20:.1f} MiB" for name, peak in memory.items()}, flush=True)
    finally:
        peers.close()
    print("first calls (a fresh process each):", flush=True)
    first = firstcall.measure(int(QUICK) if QUICK else FIRST_CALL_REPEATS)
    for tool, run in first.items():
        print(f"    {tool:<28} {run['first'] * 1e3:10.2f} ms", flush=True)
    results = report.Results(
        cases={case.name: case for case in CASES}, table=table, correct=correct, once=once,
        stale_case=STALE_CASE, memory=memory, first=first,
        load_ext=notebook.load_ext_seconds, seconds=time.perf_counter() - started,
    )
    text = report.markdown(results)
    (HERE / "RESULTS.md").write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
