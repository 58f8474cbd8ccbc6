"""RESULTS.md: the machine, the table (every tool, the serial loop, ratios to
the best peer of each row), the footnotes and the verdicts on issue 13's
targets, all from one run."""

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil

from peers import FORK_PEERS, PARMAGIC, PEERS, SERIAL

MAGIC = "%pmap"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Results:
    cases: dict  # name -> run.Case
    table: dict  # case -> {tool: median seconds}
    correct: dict  # case -> {tool: results equal to the serial loop's}
    once: dict  # case -> {tools timed in one round only}
    stale_case: str
    memory: dict  # name -> peak traced bytes
    first: dict  # tool -> {"first", "setup", "left"}
    load_ext: float
    seconds: float


def best_peer(results, case, among=PEERS):
    """The fastest of ``among`` whose results were right in ``case``."""
    right = [tool for tool in among if results.correct[case][tool]]
    return min(right, key=results.table[case].get)


def shown(results, case, seconds):
    if results.cases[case].unit == "µs/item":
        return f"{seconds / results.cases[case].size * 1e6:.2f}"
    milliseconds = seconds * 1e3
    return f"{milliseconds:.1f}" if milliseconds >= 10 else f"{milliseconds:.2f}"


def timing_row(results, case, tools):
    best = best_peer(results, case)
    cells = []
    for tool in tools:
        seconds = results.table[case][tool]
        cell = f"{shown(results, case, seconds)} ({seconds / results.table[case][best]:.2f}x)"
        if tool == best:
            cell = f"**{cell}**"
        if not results.correct[case][tool]:
            cell += " stale"
        if tool in results.once[case]:
            cell += " ¹"
        cells.append(cell)
    unit = results.cases[case].unit
    return f"| {case} ({unit}) | " + " | ".join(cells) + " |"


def extra_rows(results, tools):
    cpu = "8 CPU tasks of 0.2 s"
    serial_cpu = results.table[cpu][SERIAL]
    first = results.first
    best_first = min(PEERS, key=lambda tool: first[tool]["first"])

    def first_cell(tool):
        if tool not in first:
            return ""
        cell = f"{first[tool]['first'] * 1e3:.1f} ({first[tool]['first'] / first[best_first]['first']:.2f}x)"
        return f"**{cell}**" if tool == best_first else cell

    rows = {
        f"{cpu}: speedup over the serial loop":
            [f"{serial_cpu / results.table[cpu][tool]:.2f}x" for tool in tools],
        "first call 1 s after import / `%load_ext`, fresh process, pool start included (ms)":
            [first_cell(tool) for tool in tools],
        "import / `%load_ext` before it (ms)":
            [f"{first[tool]['setup'] * 1e3:.0f}" if tool in first else "" for tool in tools],
        "worker processes left 3 s after that process exits":
            [str(len(first[tool]["left"])) if tool in first else "" for tool in tools],
        "sees `BIG += 1` made after its pool started":
            ["yes" if results.correct[results.stale_case][tool] else "**no (stale)**"
             for tool in tools],
    }
    return [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]


def table(results):
    tools = [SERIAL, *PEERS, *PARMAGIC]
    lines = ["| case | " + " | ".join(tools) + " |", "|---" * (len(tools) + 1) + "|"]
    lines += [timing_row(results, case, tools) for case in results.table]
    return "\n".join(lines + extra_rows(results, tools))


def verdicts(results):
    """(target, measured ratio, limit) for issue 13's targets, for %pmap."""
    def vs(case, among=PEERS, tool=MAGIC):
        best = best_peer(results, case, among)
        return results.table[case][tool] / results.table[case][best], best

    def line(target, case, limit, among=PEERS, against=None):
        ratio, best = vs(case, among)
        if against:
            ratio, best = results.table[case][MAGIC] / results.table[case][against], against
        pmap = results.table[case]["parmagic.pmap"] / results.table[case][best]
        return (f"{target}: %pmap {ratio:.2f}x {best} (parmagic.pmap {pmap:.2f}x)", ratio <= limit)

    first = results.first
    first_ratio = first[MAGIC]["first"] / first["joblib"]["first"]
    memory = results.memory
    extra = memory["%pmap"] - memory["serial loop"]
    return [
        line("4 tiny items, warm <= 1.0x best peer", "4 tiny items, warm", 1.0),
        line("10,000 tiny items <= 1.5x best peer", "10,000 tiny items", 1.5),
        line("1,000,000 tiny items (list) <= 2x best peer per item",
             "1,000,000 tiny items, list", 2.0),
        line("1,000,000 tiny items (generator) <= 2x best peer per item",
             "1,000,000 tiny items, generator", 2.0),
        (f"generator of 10**6 items: kernel memory bounded (peak growth beyond the serial "
         f"loop's, {extra / 2**20:.1f} MiB, under half of materialising the input, "
         f"{memory['materialised input'] / 2**20:.1f} MiB)",
         extra < memory["materialised input"] / 2),
        line("8 CPU tasks <= 1.05x best peer", "8 CPU tasks of 0.2 s", 1.05),
        line("8 x 8 MB arrays as items <= 0.25x joblib", "8 numpy arrays of 8 MB as items",
             0.25, against="joblib"),
        line("200 MB global read by every item <= 1.0x best fork peer",
             "200 MB numpy global, 8 items, unchanged (repeated call)", 1.0, among=FORK_PEERS),
        ("an in-place change (`BIG += 1`) is always seen by %pmap",
         results.correct[results.stale_case][MAGIC]),
        (f"first call 1 s after `%load_ext` <= 0.2x joblib's first call: "
         f"%pmap {first_ratio:.2f}x", first_ratio <= 0.2),
    ]


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in
                         ("joblib", "mpire", "numpy", "pandas", "ipython", "cloudpickle"))
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return (f"{platform.platform()}, {cpu}, {os.cpu_count()} cores "
            f"(shared with other work), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
            f"Python {platform.python_version()}, {versions}; parmagic at {commit}")


NOTES = """\
Each cell: the median of interleaved repeats with warm pools (2 workers), and
in brackets the time relative to the best peer of the row (**bold**; peers are
joblib, fork `multiprocessing.Pool`, fork `ProcessPoolExecutor` and mpire; a
peer with stale results does not count). Lower is better. The functions and
data are defined in an IPython `InteractiveShell` and every tool maps the same
function objects over the same data; `%pmap` is typed as `%pmap -n 2 FUNC ITEMS`
and `parmagic.pmap` called with `n_jobs=2`, both with every default on
(mutation check, output capture, progress bar after 1 s). The fork pools were
created after the data existed, which is how they share it. "stale": the
results differed from the serial loop's (a fork pool keeps the memory of its
fork: after `BIG += 1` it still reads the old array). The module-function row
maps a function imported from `benchmarks/workloads.py`, which pickles by
reference. For a generator, `multiprocessing.Pool.map` makes a list first;
mpire is given `iterable_len` (it requires it) and ProcessPoolExecutor the
chunk size `Pool.map` would choose. ¹: timed in one round only (a peer over
3x the best peer's time in the first round, in the 10**6-item rows). In the
`BIG += 1` row the array is changed in place, untimed, before every call, so
each tool meets a version it has not seen. Absolute times vary from run to
run and the machine is shared; compare the ratios.
"""


def markdown(results):
    memory = results.memory
    unchanged, changed = (results.table[case][MAGIC] for case in (
        "200 MB numpy global, 8 items, unchanged (repeated call)", results.stale_case))
    lines = [
        "# Benchmark results",
        "",
        f"`make bench`, {datetime.date.today().isoformat()}, on {machine()}. "
        f"The whole run took {results.seconds:.0f} s.",
        "",
        NOTES,
        table(results),
        "",
        f"- `%load_ext parmagic` took {results.load_ext * 1e3:.0f} ms in the benchmark's shell.",
        f"- The 200 MB global: `%pmap` took {unchanged * 1e3:.0f} ms on a repeated call with "
        f"the global unchanged, {changed * 1e3:.0f} ms on the first call after `BIG += 1`.",
        "- Peak traced memory growth of the kernel process consuming a generator of "
        f"10**6 tiny items: serial loop {memory['serial loop'] / 2**20:.1f} MiB (the result "
        f"list), `%pmap` {memory['%pmap'] / 2**20:.1f} MiB; `list()` of the same generator "
        f"takes {memory['materialised input'] / 2**20:.1f} MiB.",
        "",
        "Targets of issue 13, for `%pmap` with every default on:",
        "",
    ]
    for text, met in verdicts(results):
        lines.append(f"- {text} -> {'met' if met else 'NOT met'}")
    return "\n".join(lines) + "\n"
