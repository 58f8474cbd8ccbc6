"""``LokyPool``: the loky workers one run sends its chunks to, through
``transport.channels``: the warm pool (``warm_pool``) or a private one, and
the record of what starting them cost (``PoolStart``)."""

import time
from typing import NamedTuple

from parmagic.common import joblib_internals as internals
from parmagic.engine import warm_pool


class PoolStart(NamedTuple):
    """What a run waited for while its pool started, was resized or
    stopped: ``seconds`` from ``asked_at`` (``time.time()``) in the
    notebook, ``started`` new workers (``new_pids``: those whose first task
    shows when they were ready) and ``stopped`` workers."""

    asked_at: float
    seconds: float
    started: int
    new_pids: frozenset = frozenset()
    stopped: int = 0


class LokyPool:
    """The loky workers one run sends its chunks to, through ``channels``.

    ``private=False``: parmagic's warm pool, kept between runs (one run at
    a time uses it: a run that finds it in use gets a private one).
    ``private=True``: a pool made for this run alone, shut down by
    ``close``. ``workers``: how many the run needs (None: as many as
    ``parallel`` asks for); a warm pool with more, but no more than
    ``parallel`` asks for (``n_jobs``, its ``effective_n_jobs`` if the
    caller has it: with n_jobs=-1 that reads the CPU limits, 0.1 ms), is
    used as it is. ``starts`` records each time workers were started for
    the run.
    """

    def __init__(self, parallel, private=False, workers=None, n_jobs=None, max_tasks=None,
                 warm_up=None):
        self.parallel = parallel
        # what a warm pool's first start waits for: the warm-up started at
        # %load_ext (``warmup.wait``), which may still be starting it
        self.warm_up = warm_up
        self.max_tasks = max_tasks  # items a worker runs before it is replaced
        self.private = private
        self.n_jobs = n_jobs or internals.effective_n_jobs(parallel)
        self.workers = workers or self.n_jobs
        self.executor = None  # started with the first submission
        self.channels = None
        self.starts = []
        # called with running items' new output (live_output.News) as it comes
        self.on_output = None

    def submit(self, task, items=1):
        """Submit ``task`` (a callable that pickles, running ``items``
        items); returns its future."""
        if self.channels is None:
            self._start()
            self.channels.max_tasks = self.max_tasks
            self.channels.on_output = self.on_output
        return self.channels.submit(task, items)

    def wait(self, futures, timeout):
        """The ``futures`` done once one is, or ``timeout`` has passed."""
        if self.channels is None:
            return {future for future in futures if future.done()}
        return self.channels.wait(futures, timeout)

    def _start(self):
        if not self.private and self.warm_up is not None:
            self._wait_for_warm_up()
        asked, began = time.time(), time.perf_counter()
        before = set() if self.private else internals.worker_pids(warm_pool.executor())
        pool = (None if self.private
                else warm_pool.take(self.parallel, self.workers, self.n_jobs))
        if pool is None:  # asked for, or the warm pool is busy with another run
            self.private = True
            pool = warm_pool.new_pool(self.parallel, self.workers)
        self.executor, self.channels = pool
        after = internals.worker_pids(self.executor)
        self.starts.append(PoolStart(
            asked, time.perf_counter() - began, len(after - before),
            frozenset(after - before), len(before - after)))

    def _wait_for_warm_up(self):
        waited = self.warm_up()
        if waited is not None:
            seconds, n_workers = waited
            self.starts.append(PoolStart(time.time() - seconds, seconds, n_workers))

    def worker_pids(self):
        """Process ids of the workers serving this run now (none before the
        first submission)."""
        return internals.worker_pids(self.executor)

    def kill(self):
        """Kill the workers now; the next submission starts fresh ones."""
        if self.executor is None:
            return
        if not self.private:
            warm_pool.forget(self.executor)
        warm_pool.stop(self.executor, self.channels, wait=True, kill=True)
        self.executor = self.channels = None

    def close(self):
        """The run is over: a private pool goes away (the time that takes
        is in ``starts``); the warm one stays for the next run."""
        if self.executor is None:
            return
        if self.private:
            began, workers = time.perf_counter(), len(internals.worker_pids(self.executor))
            self.kill()
            self.starts.append(PoolStart(
                time.time(), time.perf_counter() - began, 0, stopped=workers))
        elif self.channels.idle():
            self.channels.max_tasks = self.channels.on_output = None  # this run's
            self.channels.run_over()
            warm_pool.give_back(self.executor)
        else:  # chunks of this run still out: the next run must not get them
            self.kill()
        self.executor = self.channels = None
