"""The tools compared, each a ``map(func_name, items_source, size)`` over the
notebook's own functions and data, with its pool kept warm between calls
as a notebook user would keep it.

Every tool gets the function object and the items from the same notebook
namespace; ``%pmap`` gets their names, as a user types them. ``size`` is
the number of items, which a user mapping a generator over ``range(n)``
knows: mpire needs it for a generator and ProcessPoolExecutor needs a
chunk size (given as multiprocessing.Pool.map would choose it).
"""

import concurrent.futures
import multiprocessing

import joblib

import parmagic
from notebook import N_JOBS

SERIAL = "serial loop"
PEERS = ("joblib", "mp.Pool (fork)", "ProcessPoolExecutor (fork)", "mpire")
FORK_PEERS = PEERS[1:]
PARMAGIC = ("parmagic.pmap", "%pmap")


def pool_chunksize(size):
    """multiprocessing.Pool.map's default chunk size."""
    chunksize, extra = divmod(size, N_JOBS * 4)
    return chunksize + bool(extra) or 1


class Peers:
    """The tools, bound to one notebook. Create it after the notebook's data
    exists: fork pools share the memory they inherit, as of their fork."""

    def __init__(self, notebook):
        from mpire import WorkerPool

        self.notebook = notebook
        fork = multiprocessing.get_context("fork")
        self.mp_pool = fork.Pool(N_JOBS)
        self.executor = concurrent.futures.ProcessPoolExecutor(N_JOBS, mp_context=fork)
        # fork is mpire's default start method; it forks at its first map
        self.mpire = WorkerPool(n_jobs=N_JOBS, keep_alive=True)

    def tools(self):
        return {
            SERIAL: self.serial,
            "joblib": self.joblib,
            "mp.Pool (fork)": self.mp_map,
            "ProcessPoolExecutor (fork)": self.executor_map,
            "mpire": self.mpire_map,
            "parmagic.pmap": self.pmap,
            "%pmap": self.notebook.pmap_magic,
        }

    def _get(self, func_name, items_source):
        return self.notebook.ns[func_name], self.notebook.evaluate(items_source)

    def serial(self, func_name, items_source, size=None):
        func, items = self._get(func_name, items_source)
        return [func(item) for item in items]

    def joblib(self, func_name, items_source, size=None):
        func, items = self._get(func_name, items_source)
        return joblib.Parallel(n_jobs=N_JOBS)(joblib.delayed(func)(item) for item in items)

    def mp_map(self, func_name, items_source, size=None):
        return self.mp_pool.map(*self._get(func_name, items_source))

    def executor_map(self, func_name, items_source, size):
        func, items = self._get(func_name, items_source)
        return list(self.executor.map(func, items, chunksize=pool_chunksize(size)))

    def mpire_map(self, func_name, items_source, size):
        func, items = self._get(func_name, items_source)
        return self.mpire.map(func, items, iterable_len=size, progress_bar=False)

    def pmap(self, func_name, items_source, size=None):
        func, items = self._get(func_name, items_source)
        return parmagic.pmap(func, items, n_jobs=N_JOBS)  # every default on

    def first_tools(self):
        """Each tool's way to take results one by one as they come: a
        function returning an iterator over them (the serial loop's is
        ``map``). Imap-style calls send every item at once."""
        return {
            SERIAL: lambda func_name, items_source, size: map(*self._get(func_name, items_source)),
            "joblib": self.joblib_iter,
            "mp.Pool (fork)": lambda func_name, items_source, size: self.mp_pool.imap(
                *self._get(func_name, items_source)),
            "ProcessPoolExecutor (fork)": lambda func_name, items_source, size: self.executor.map(
                *self._get(func_name, items_source)),
            "mpire": lambda func_name, items_source, size: self.mpire.imap(
                *self._get(func_name, items_source), iterable_len=size, progress_bar=False),
            "parmagic.pmap": lambda func_name, items_source, size: parmagic.pmap(
                *self._get(func_name, items_source), n_jobs=N_JOBS, as_iter=True),
            "%pmap": self.notebook.pmap_magic_iter,
        }

    def joblib_iter(self, func_name, items_source, size=None):
        func, items = self._get(func_name, items_source)
        return joblib.Parallel(n_jobs=N_JOBS, return_as="generator")(
            joblib.delayed(func)(item) for item in items)

    def close(self):
        self.mp_pool.terminate()
        self.executor.shutdown(cancel_futures=True)
        self.mpire.terminate()
        parmagic.shutdown_workers()
