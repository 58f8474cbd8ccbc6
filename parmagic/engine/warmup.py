"""Starting the worker pool while the user is still typing.

A fresh loky pool takes a few hundred milliseconds to start (new Python
processes importing joblib and cloudpickle), which used to land on the first
``%pmap``. When the extension loads, a daemon thread starts the warm pool,
so ``%load_ext`` returns at once and the first call
finds warm workers. ``%config ParMagic.warm_pool = False`` (or the same in
``ipython_config.py``) turns it off.

A call that comes while the workers are still starting waits for them
(``wait``), and its ``-t`` summary counts that wait as worker start-up.
A process that exits meanwhile (a script that ends right after
``%load_ext``) waits for the warm-up to give up and clean up after itself
(``_give_up_at_exit``); otherwise the thread would be stopped half-way and
loky's semaphores, the connection folder and loky's warnings about them
would be left behind.
"""

import threading
import time

from joblib import Parallel

from parmagic.common import joblib_internals as internals
from parmagic.common.cores import cores
from parmagic.engine.loky_pool import LokyPool
from parmagic.transport.channels import exiting
from parmagic.worker.chunk import Chunk

_started = {}  # n_jobs -> the thread that warmed a pool for it
# How long an exit waits at most for a warm-up to give up (spawning a worker
# cannot be interrupted; stopping what was started takes well under this).
_GIVE_UP_TIMEOUT = 10.0


def start(n_jobs=None):
    """Start the warm pool for ``n_jobs`` workers (None: all cores) in the
    background; returns the thread (already started)."""
    n_jobs = -1 if n_jobs is None else n_jobs
    thread = _started.get(n_jobs)
    if thread is not None and thread.is_alive():
        return thread
    thread = threading.Thread(target=_warm, args=(n_jobs,), daemon=True,
                              name="parmagic-warm-pool")
    _started[n_jobs] = thread
    internals.at_exit_before_threads_stop(_give_up_at_exit)  # (once: with the first warm-up)
    thread.start()
    return thread


def wait():
    """Wait until warm-ups still running (in other threads) have every
    worker ready; return ``(seconds waited, workers they started)``, or None
    when none was running."""
    running = [thread for thread in _started.values()
               if thread.is_alive() and thread is not threading.current_thread()]
    if not running:
        return None
    began = time.perf_counter()
    for thread in running:
        thread.join()
    return time.perf_counter() - began, sum(getattr(t, "n_workers", 0) for t in running)


def _give_up_at_exit():
    """At exit: a pool still starting stops (``channels.exiting``), and the
    exit waits for the warm-ups to have stopped their workers and removed
    what they made."""
    exiting.set()
    for thread in list(_started.values()):
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(_GIVE_UP_TIMEOUT)


def _warm(n_jobs):
    try:
        threading.current_thread().n_workers = _start_warm_pool(n_jobs)
    except Exception:  # a failed warm-up costs nothing: the first call starts the pool
        pass


def _start_warm_pool(n_jobs):
    """Start parmagic's warm pool with ``n_jobs`` workers, as the first run
    will ask for it, and wait until every worker has connected (so it has
    imported what a task needs). Returns the number of workers.

    No more workers than cores: a run that needs more has a pool of its
    own (``pool_size``), so more would only wait, unused."""
    parallel = Parallel(n_jobs=n_jobs, backend="loky")
    n_workers = internals.effective_n_jobs(parallel)
    if not internals.runs_on_loky(parallel, n_workers) or exiting.is_set():
        return 0
    n_workers = min(n_workers, cores())
    pool = LokyPool(parallel, workers=n_workers)
    try:
        tasks = [pool.submit(Chunk(abs, [(0, (0,))])) for _ in range(n_workers)]
        for task in tasks:
            task.result()
    finally:
        pool.close()  # the workers stay warm
    return n_workers
