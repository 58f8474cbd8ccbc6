"""``make bench``: parmagic against serial, raw joblib, multiprocessing.Pool,
concurrent.futures and mpire (when installed), in one process run.

Every pool is warm before it is timed (except in the first-call case, which
starts a fresh Python process per tool), each number is the median of
several repeats, and the verdicts are ratios measured in this same run.
Prints a table and writes benchmarks/RESULTS.md.
"""

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import tools  # noqa: E402
import workloads  # noqa: E402

REPEATS = 7
FIRST_CALL_REPEATS = 7


def interleaved_medians(calls, repeats):
    """{name: median seconds} of each ``calls[name]()``: one warm-up call
    each, then rounds in which every call runs once, so drift in the
    machine's speed affects all of them alike."""
    times = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def calibrated_loops(seconds=0.2):
    loops = 200_000
    started = time.perf_counter()
    workloads.cpu_task(loops)
    return int(loops * seconds / (time.perf_counter() - started))


def cases():
    """(name, unit, func, items, repeats)."""
    loops = calibrated_loops()
    return [
        ("10,000 tiny items", "µs/item", workloads.identity, list(range(10_000)), REPEATS),
        ("8 CPU tasks of 0.2 s", "speedup", workloads.cpu_task, [loops] * 8, 5),
        ("4 tiny items, warm", "ms/call", workloads.identity, list(range(4)), REPEATS * 3),
        ("8 arrays of 8 MB", "ms/call", workloads.array_sum, workloads.arrays(), REPEATS),
    ]


def measure_warm(contenders):
    """{case: {tool: seconds}} for the warm cases."""
    table = {}
    for name, _, func, items, repeats in cases():
        calls = {tool: (lambda run=run: run(func, items)) for tool, run in contenders.items()}
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            table[name] = interleaved_medians(calls, repeats)
        for tool, seconds in table[name].items():
            print(f"  {name:<22} {tool:<22} {seconds * 1e3:9.2f} ms", flush=True)
    return table


# tool -> (set-up, the first call); only the call is timed
FIRST_CALLS = {
    "joblib": ("", "tools.joblib_parallel(workloads.identity, items)"),
    "multiprocessing.Pool": (
        "import multiprocessing as mp",
        "mp.Pool(2).map(workloads.identity, items)",
    ),
    "ProcessPoolExecutor": (
        "import concurrent.futures as cf",
        "list(cf.ProcessPoolExecutor(2).map(workloads.identity, items))",
    ),
    "mpire": (
        "from mpire import WorkerPool",
        "WorkerPool(n_jobs=2).map(workloads.identity, items, progress_bar=False)",
    ),
    "parmagic.pmap": ("", "tools.parmagic_pmap(workloads.identity, items)"),
    "%pmap": (
        "from IPython.core.interactiveshell import InteractiveShell; "
        "shell = InteractiveShell.instance(); "
        "shell.run_line_magic('load_ext', 'parmagic'); "
        "shell.user_ns.update(items=items, identity=workloads.identity)",
        "shell.run_line_magic('pmap', '-n 2 identity items')",
    ),
}

FIRST_CALL_SCRIPT = """
import sys, time
sys.path.insert(0, {here!r})
import joblib, parmagic, tools, workloads
items = list(range(4))
{setup}
started = time.perf_counter()
{call}
print(time.perf_counter() - started)
"""


def measure_first_calls(names):
    """Seconds of the first call in a fresh process, pool start included
    (imports excluded): the median over several processes per tool, run in
    rounds that take every tool in turn."""
    scripts = {}
    for tool in names:
        if tool in FIRST_CALLS:
            setup, call = FIRST_CALLS[tool]
            scripts[tool] = FIRST_CALL_SCRIPT.format(here=str(HERE), setup=setup, call=call)
    runs = {tool: [] for tool in scripts}
    for _ in range(FIRST_CALL_REPEATS):
        for tool, script in scripts.items():
            done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                  text=True, timeout=120, check=True)
            runs[tool].append(float(done.stdout.split()[-1]))
    seconds = {tool: statistics.median(values) for tool, values in runs.items()}
    for tool, value in seconds.items():
        print(f"  {'first call':<22} {tool:<22} {value * 1e3:9.2f} ms", flush=True)
    return seconds


def shown(case, unit, seconds, serial_seconds):
    if unit == "µs/item":
        return f"{seconds / 10_000 * 1e6:.2f}"
    if unit == "speedup":
        return f"{serial_seconds / seconds:.2f}x"
    return f"{seconds * 1e3:.2f}"


def markdown(table, first, units):
    tools_ = list(next(iter(table.values())))
    head = "| case | " + " | ".join(tools_) + " |"
    rule = "|---" * (len(tools_) + 1) + "|"
    rows = []
    for case, by_tool in table.items():
        unit = units[case]
        joblib_time = by_tool["joblib"]
        cells = []
        for tool in tools_:
            value = shown(case, unit, by_tool[tool], by_tool["serial"])
            ratio = by_tool[tool] / joblib_time
            plain = tool == "joblib" or unit == "speedup"  # a speedup is a ratio already
            cells.append(value if plain else f"{value} ({ratio:.2f}x)")
        rows.append(f"| {case} ({unit}) | " + " | ".join(cells) + " |")
    cells = []
    for tool in tools_:
        if tool in first:
            ratio = first[tool] / first["joblib"]
            value = f"{first[tool] * 1e3:.1f}"
            cells.append(value if tool == "joblib" else f"{value} ({ratio:.2f}x)")
        else:
            cells.append("")
    rows.append("| first call, pool start included (ms) | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


def verdicts(table, first):
    """The performance targets, each as (text, measured, passed)."""
    magic = "%pmap --progress"  # every feature on

    def ratio(case):
        return table[case][magic] / table[case]["joblib"]

    speedup = table["8 CPU tasks of 0.2 s"]["serial"] / table["8 CPU tasks of 0.2 s"][magic]
    first_ratio = first["%pmap"] / first["joblib"]
    return [
        ("warm 4-item call <= 0.25 x raw joblib", ratio("4 tiny items, warm"), 0.25),
        ("10,000 tiny items <= 0.5 x raw joblib", ratio("10,000 tiny items"), 0.5),
        ("CPU-bound speedup over serial >= 1.9", speedup, 1.9),
        ("8 x 8 MB arrays <= 1.0 x raw joblib", ratio("8 arrays of 8 MB"), 1.0),
        ("first call <= 1.2 x raw joblib's first call", first_ratio, 1.2),
    ]


def report(table, first, units):
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `make bench` on {platform.platform()}, Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, {tools.N_JOBS} workers. "
        "Each cell is the median of several repeats with warm pools; in brackets, "
        "the time relative to raw joblib in the same run (lower is better). "
        "`parmagic.pmap` and `%pmap` run with their defaults (global-mutation check, "
        "output capture, progress bar after 1 s); `pmap, bar on` and "
        "`%pmap --progress` draw the bar from the start. Absolute times vary from "
        "run to run; the ratios are what to compare.",
        "",
        markdown(table, first, units),
        "",
        "Targets for `%pmap --progress` (every feature on):",
        "",
    ]
    for text, measured, target in verdicts(table, first):
        better = measured >= target if "speedup" in text else measured <= target
        lines.append(f"- {text}: measured {measured:.2f} -> {'met' if better else 'MISSED'}")
    return "\n".join(lines) + "\n"


def main():
    pools = tools.Pools()
    try:
        contenders = pools.tools()
        print(f"warm runs ({len(contenders)} tools):")
        table = measure_warm(contenders)
    finally:
        pools.close()
    print("first calls (a fresh process each):")
    first = measure_first_calls(contenders)
    units = {name: unit for name, unit, *_ in cases()}
    text = report(table, first, units)
    (HERE / "RESULTS.md").write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
