"""A CPU-bound pure-Python function on ``-b threading``, on loky and in a
plain loop, timed interleaved in one process: on the free-threaded build
(3.14t) threads run Python side by side, elsewhere the GIL takes turns.

    python benchmarks/threads.py          # the Python it runs on
"""

import statistics
import sys
import time

from parmagic import pmap, shutdown_workers


def collatz_steps(n):
    """Pure Python, no allocation: only the interpreter's speed counts."""
    steps = 0
    for start in range(n, n + 20_000):
        x = start
        while x != 1:
            x = x // 2 if x % 2 == 0 else 3 * x + 1
            steps += 1
    return steps


ITEMS = list(range(1, 17))
N_JOBS = 2
REPEATS = 5


def main():
    ways = {
        "loop": lambda: [collatz_steps(i) for i in ITEMS],
        "-b threading": lambda: pmap(collatz_steps, ITEMS, n_jobs=N_JOBS,
                                     backend="threading", progress=False),
        "loky": lambda: pmap(collatz_steps, ITEMS, n_jobs=N_JOBS, progress=False),
    }
    expected = ways["loop"]()
    for way in ways.values():  # warm: the loky pool started, imports done
        assert way() == expected
    times = {name: [] for name in ways}
    for _ in range(REPEATS):  # interleaved, so a busy moment hits them all
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - started)
    shutdown_workers()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"Python {sys.version.split()[0]}{'' if gil else ' (free-threaded, GIL off)'}, "
          f"{len(ITEMS)} items, n_jobs={N_JOBS}, median of {REPEATS}:")
    loop = statistics.median(times["loop"])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:14} {median:6.2f} s   {loop / median:4.2f}x the loop")


if __name__ == "__main__":
    main()
