"""The contenders: one ``map(func, items) -> list`` per parallel tool, each
kept warm between calls (as a notebook user would keep a pool)."""

import concurrent.futures
import multiprocessing

import joblib

import parmagic

N_JOBS = 2


def serial(func, items):
    return [func(item) for item in items]


def joblib_parallel(func, items):
    return joblib.Parallel(n_jobs=N_JOBS)(joblib.delayed(func)(item) for item in items)


def parmagic_pmap(func, items):
    return parmagic.pmap(func, items, n_jobs=N_JOBS)  # the defaults


def parmagic_pmap_bar(func, items):
    # every feature on: mutation check, output capture, and a progress bar
    # drawn from the start (run.py sends it to /dev/null)
    return parmagic.pmap(func, items, n_jobs=N_JOBS, progress=True)


class Pools:
    """Pools that must be created once and closed at the end."""

    def __init__(self):
        self.mp_pool = multiprocessing.Pool(N_JOBS)
        self.executor = concurrent.futures.ProcessPoolExecutor(N_JOBS)
        self.mpire = _mpire_pool()
        self.shell = _shell()

    def tools(self):
        tools = {
            "serial": serial,
            "joblib": joblib_parallel,
            "multiprocessing.Pool": self.mp_map,
            "ProcessPoolExecutor": self.executor_map,
        }
        if self.mpire is not None:
            tools["mpire"] = self.mpire_map
        tools["parmagic.pmap"] = parmagic_pmap
        tools["pmap, bar on"] = parmagic_pmap_bar
        tools["%pmap"] = self.magic_map
        tools["%pmap --progress"] = self.magic_map_bar
        return tools

    def mp_map(self, func, items):
        return self.mp_pool.map(func, items)

    def executor_map(self, func, items):
        # chunksize as multiprocessing.Pool.map would choose, to be fair
        chunksize = max(1, len(items) // (4 * N_JOBS))
        return list(self.executor.map(func, items, chunksize=chunksize))

    def mpire_map(self, func, items):
        return self.mpire.map(func, items, progress_bar=False)

    def magic_map(self, func, items, options=""):
        self.shell.user_ns.update(bench_func=func, bench_items=items)
        line = f"-n {N_JOBS} {options} bench_func bench_items"
        return self.shell.run_line_magic("pmap", line)

    def magic_map_bar(self, func, items):
        return self.magic_map(func, items, "--progress")

    def close(self):
        self.mp_pool.terminate()
        self.executor.shutdown(cancel_futures=True)
        if self.mpire is not None:
            self.mpire.terminate()
        parmagic.shutdown_workers()


def _mpire_pool():
    try:
        from mpire import WorkerPool
    except ImportError:
        return None
    return WorkerPool(n_jobs=N_JOBS, keep_alive=True)


def _shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "parmagic")
    return shell
