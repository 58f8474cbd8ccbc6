"""The notebook the benchmark maps: a real IPython ``InteractiveShell`` whose
cells define the functions and the data, as a user would type them.

Functions defined in these cells have ``__module__ == "__main__"`` (the
shell's user module), so cloudpickle ships them and the globals they read
by value, and fork pools find them in the memory they inherited: exactly
what happens in a Jupyter kernel.
"""

import time

N_JOBS = 2

FUNCTIONS = '''
import time
import numpy as np
import pandas as pd

def identity(x):
    return x

def cpu_task(loops):
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total

def array_sum(array):
    return float(array.sum())

def read_big(i):
    return float(BIG.sum()) + i

def sleep20(x):
    time.sleep(0.02)
    return x

def read_frame(i):
    return float(FRAME["a"].sum() + FRAME["b"].sum() + FRAME["c"].sum()
                 + FRAME["d"].sum()) + i
'''

DATA = '''
TINY4 = list(range(4))
TINY10K = list(range(10_000))
TINY1M = list(range(1_000_000))
EIGHT = list(range(8))
THOUSAND = list(range(1000))
ARRAYS = [np.full(1 << 20, float(i)) for i in range(8)]          # 8 x 8 MiB
BIG = np.arange(25 << 20, dtype=np.float64)                       # 200 MiB
_rows = 7_000_000                                                 # ~203 MB
FRAME = pd.DataFrame({
    "a": np.random.default_rng(0).random(_rows),
    "b": np.linspace(0, 1, _rows),
    "c": np.arange(_rows, dtype=np.int64),
    "d": np.ones(_rows, dtype=np.float32),
    "key": pd.Categorical.from_codes(np.arange(_rows) % 100,
                                     [f"k{i}" for i in range(100)]),
})
'''


class Notebook:
    """One ``InteractiveShell`` with the benchmark's cells run and
    ``%load_ext parmagic`` done."""

    def __init__(self, load_parmagic=True):
        from IPython.core.interactiveshell import InteractiveShell

        self.shell = InteractiveShell.instance()
        self.run(FUNCTIONS)
        self.load_ext_seconds = None
        if load_parmagic:
            started = time.perf_counter()
            self.shell.run_line_magic("load_ext", "parmagic")
            self.load_ext_seconds = time.perf_counter() - started

    @property
    def ns(self):
        return self.shell.user_ns

    def run(self, cell):
        result = self.shell.run_cell(cell, store_history=False)
        result.raise_error()
        return result

    def define_data(self):
        self.run(DATA)

    def define_cpu_items(self, seconds=0.2):
        """``CPU_ITEMS``: 8 loop counts, each about ``seconds`` of cpu_task."""
        loops = 200_000
        fastest = float("inf")
        for _ in range(3):  # the fastest of three: the machine is shared
            started = time.perf_counter()
            self.ns["cpu_task"](loops)
            fastest = min(fastest, time.perf_counter() - started)
        loops = int(loops * seconds / fastest)
        self.run(f"CPU_ITEMS = [{loops}] * 8")

    def evaluate(self, source):
        """The value of ``source`` in the notebook (an items expression)."""
        return eval(source, self.ns)  # noqa: S307 - the benchmark's own cells

    def pmap_magic(self, func_name, items_source, size=None):
        """``%pmap -n 2 FUNC ITEMS``, typed in the notebook."""
        return self.shell.run_line_magic("pmap", f"-n {N_JOBS} {func_name} {items_source}")

    def pmap_magic_iter(self, func_name, items_source, size=None):
        """``%pmap --iter -n 2 FUNC ITEMS``: an iterator over the results."""
        return self.shell.run_line_magic(
            "pmap", f"--iter -n {N_JOBS} {func_name} {items_source}")
