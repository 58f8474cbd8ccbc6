"""The one module that touches joblib's and loky's private names.

parmagic drives joblib's loky pool through its futures (see ``pool.py``) and
reads a few facts off ``joblib.Parallel`` objects. Every name joblib does not
document is used here and nowhere else, and ``tests/test_joblib_internals.py``
checks each one exists, so a joblib upgrade that moves one fails that test
by name instead of breaking a run. pyproject.toml pins the joblib versions
this was tested with.

Pools: a foreground run uses the warm pool joblib itself keeps (loky's
reusable executor), so ``joblib.Parallel`` calls and ``%pmap`` share workers.
A background run gets a private pool of its own (``LokyPool(private=True)``),
so stopping, crashing or timing out any other run never touches its workers,
and its end removes its own workers and temporary files only.
"""

import contextlib
import multiprocessing.pool
import os
import signal
import threading
import time
import weakref
from typing import NamedTuple

from joblib import executor as joblib_executor
from joblib import parallel as joblib_parallel
from joblib._parallel_backends import (
    LokyBackend,
    MultiprocessingBackend,
    SequentialBackend,
    ThreadingBackend,
)
from joblib.externals.loky import ProcessPoolExecutor, reusable_executor

from .worker_process import prepare_worker

# loky's default for how long idle workers wait before they exit (seconds)
_IDLE_WORKER_TIMEOUT = 300


# -- facts about a joblib.Parallel ------------------------------------------------
def backend_of(parallel):
    """The backend instance a ``joblib.Parallel`` runs on."""
    return parallel._backend


def effective_n_jobs(parallel):
    """How many workers ``parallel`` will use (asks a dask scheduler)."""
    return parallel._effective_n_jobs()


def runs_on_loky(parallel, n_jobs):
    """True when ``parallel`` runs on loky with ``n_jobs`` > 1 workers."""
    return type(parallel._backend) is LokyBackend and n_jobs > 1


def starts_local_workers(parallel):
    """True when ``parallel`` starts its workers (processes or threads) on
    this machine, one per job: joblib's loky, multiprocessing and threading
    backends."""
    return type(parallel._backend) in (LokyBackend, MultiprocessingBackend, ThreadingBackend)


def runs_local_processes(parallel):
    return type(parallel._backend) in (LokyBackend, MultiprocessingBackend)


def runs_serially(parallel):
    return isinstance(parallel._backend, SequentialBackend)


def items_in_main_thread(parallel):
    """Whether items run in the main thread of a process (here or in a
    worker process), where a signal can stop them."""
    backend_type = type(parallel._backend)
    return backend_type in (LokyBackend, MultiprocessingBackend, SequentialBackend)


def dask_client(parallel):
    """The ``distributed.Client`` of a ``parallel`` on joblib's dask backend."""
    return parallel._backend.client


def backend_name(parallel):
    name = type(parallel._backend).__name__
    return name.removesuffix("Backend").lower() or name


# -- joblib's backend registry ---------------------------------------------------
def registered_backends():
    """Backend names joblib knows now, ``{name: backend class}``."""
    return joblib_parallel.BACKENDS


def configured_backend():
    """``(backend instance, n_jobs)`` of the enclosing ``parallel_config``
    (n_jobs None when nothing set it)."""
    return joblib_parallel.get_active_backend()


def restore_multiprocessing_pool():
    """Ray's joblib backend rebases joblib's ``PicklingPool`` onto Ray's pool
    and leaves it so, which would send every later ``multiprocessing``
    backend run to Ray: put joblib's own base back."""
    from joblib.pool import PicklingPool

    PicklingPool.__bases__ = (multiprocessing.pool.Pool,)


# -- loky pools ------------------------------------------------------------------
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
    """The loky workers one run submits to.

    ``private=False``: joblib's warm, shared pool. ``private=True``: a pool
    made for this run alone, shut down by ``close``. ``workers``: how many
    the run needs (None: as many as ``parallel`` asks for); a warm shared
    pool with more, but no more than ``parallel`` asks for, is used as it
    is. ``starts`` records each time workers were started for the run.
    """

    def __init__(self, parallel, private=False, workers=None):
        self.parallel = parallel
        self.private = private
        self.workers = workers or effective_n_jobs(parallel)
        self.executor = None  # started with the first submission
        self.starts = []

    def submit(self, task):
        """Submit ``task`` (a callable); returns its future."""
        if self.executor is not None:
            return self.executor.submit(task)
        if not self.private:  # the warm-up thread may still be starting it
            self._wait_for_warm_up()
        with _interrupts_held():  # workers (and loky's threads) start here
            asked, began = time.time(), time.perf_counter()
            before = set() if self.private else _worker_pids(reusable_executor._executor)
            self.executor = (_private_executor if self.private else _shared_executor)(
                self.parallel, self.workers)
            future = self.executor.submit(task)  # a fresh pool spawns its workers here
            after = _worker_pids(self.executor)
            self.starts.append(PoolStart(
                asked, time.perf_counter() - began, len(after - before),
                frozenset(after - before), len(before - after)))
            return future

    def _wait_for_warm_up(self):
        from . import warmup

        waited = warmup.wait()
        if waited is not None:
            seconds, n_workers = waited
            self.starts.append(PoolStart(time.time() - seconds, seconds, n_workers))

    def kill(self):
        """Kill the workers now; the next submission starts fresh ones."""
        if self.executor is None:
            return
        if self.private:
            self.executor.shutdown(wait=True, kill_workers=True)
        else:  # joblib's executor: also removes the folders its manager made
            self.executor.terminate(kill_workers=True)
        self.executor = None

    def close(self):
        """The run is over: a private pool goes away (the time that takes
        is in ``starts``); the shared one stays warm for the next run."""
        if self.private and self.executor is not None:
            began, workers = time.perf_counter(), len(_worker_pids(self.executor))
            self.kill()
            self.starts.append(PoolStart(
                time.time(), time.perf_counter() - began, 0, stopped=workers))
        self.executor = None


def _worker_pids(executor):
    """Process ids of ``executor``'s workers (started or starting); none
    for a pool that was shut down or broke (its workers are gone)."""
    if executor is None or executor._flags.broken or executor._flags.shutdown:
        return set()
    return set(executor._processes)


@contextlib.contextmanager
def _interrupts_held():
    """Hold SIGINT back in this thread while loky may start workers and its
    manager thread: they inherit the signal mask, so a Jupyter interrupt,
    which reaches the kernel's whole process group, cannot kill a worker
    that is still starting, before it has set itself to ignore SIGINT
    (worker_process). The notebook gets a held-back interrupt right after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    # Python 3.11's own resource tracker unblocks SIGINT after it starts
    # (it does not restore the previous mask): have it running first.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


# How the shared executor parmagic last configured was set up.
_warm = {}
_shared_lock = threading.Lock()
# Private pools still open, so shutdown_pools can stop them.
_private_executors = weakref.WeakSet()


def _shared_executor(parallel, workers):
    """joblib's reusable loky executor, configured as ``parallel`` would,
    with at least ``workers`` workers and at most ``parallel``'s n_jobs.

    A warm pool that nothing has reconfigured since parmagic configured it
    is reused as it is when its size is in that range, else resized (as
    joblib would: workers keep the thread limits of the size they started
    with unless those change). Going through ``get_memmapping_executor``
    again would register a temporary folder on every call, which parmagic's
    tasks never use (they pickle themselves, see ``shared_data``). Locked:
    the warm-up thread may be here too.
    """
    with _shared_lock:
        return _configured_shared_executor(parallel, workers)


def _configured_shared_executor(parallel, workers):
    backend = parallel._backend
    allowed = backend.effective_n_jobs(parallel.n_jobs)
    key = repr((_worker_env_inputs(backend), backend.backend_kwargs,
                parallel._backend_kwargs))
    executor = reusable_executor._executor
    if (
        executor is not None
        and executor is _warm.get("executor")
        and key == _warm.get("key")
        and joblib_executor._executor_args is _warm.get("args")
        and not (executor._flags.broken or executor._flags.shutdown)
    ):
        size = min(max(executor._max_workers, workers), allowed)
        if size == executor._max_workers:
            return executor
        if backend._prepare_worker_env(n_jobs=size) == executor._env:
            executor._resize(size)  # starts, or stops idle, workers
            return executor
    # joblib's LokyBackend runs one job in the notebook's own process: ask
    # for two workers, then size the new pool before any worker starts
    asked, parallel.n_jobs = parallel.n_jobs, max(2, workers)
    try:
        parallel._initialize_backend()
    finally:
        parallel.n_jobs = asked
    executor = backend._workers
    if executor._max_workers != workers:
        executor._resize(workers)
    # Tasks pickle themselves (shared_data), so the memmapping folder joblib
    # made for this Parallel stays unused: remove it now.
    executor._temp_folder_manager._clean_temporary_resources(
        context_id=parallel._id, force=False)
    if executor._initializer is None:  # workers start when the first task comes
        executor._initializer, executor._initargs = prepare_worker, (os.getpid(),)
    backend._workers = None  # parmagic, not the backend, owns it from here
    _warm.update(executor=executor, key=key, args=joblib_executor._executor_args)
    return executor


def _worker_env_inputs(backend):
    """What ``backend._prepare_worker_env`` depends on, except the CPU
    count: computing the environment reads the cgroup files on every call
    (a tenth of a warm small run's time), while the CPU limit of a running
    kernel practically never changes."""
    names = [*backend.MAX_NUM_THREADS_VARS, backend.TBB_ENABLE_IPC_VAR]
    return backend.inner_max_num_threads, [os.environ.get(name) for name in names]


def _private_executor(parallel, n_workers):
    """A loky executor of its own for one run, with the worker environment
    and idle timeout joblib would give the shared one (tasks pickle
    themselves, so joblib's memmapping reducers are not needed)."""
    backend = parallel._backend
    options = {**backend.backend_kwargs, **parallel._backend_kwargs}
    executor = ProcessPoolExecutor(
        max_workers=n_workers,
        initializer=prepare_worker,
        initargs=(os.getpid(),),
        timeout=options.get("idle_worker_timeout", _IDLE_WORKER_TIMEOUT),
        env=backend._prepare_worker_env(n_jobs=n_workers),
    )
    _private_executors.add(executor)
    return executor


def shutdown_pools(kill=False):
    """Stop the shared pool and any private ones still running."""
    for executor in list(_private_executors):
        executor.shutdown(wait=True, kill_workers=True)
    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=kill)


def warm_shared_pool(n_jobs):
    """Start joblib's shared loky pool with ``n_jobs`` workers, as the first
    run will ask for it, and wait until every worker has run a task (so it
    has imported what a task needs). Returns the number of workers.

    No more workers than cores: a run that needs more has a pool of its
    own (``pool_size``), so more would only wait, unused."""
    from joblib import Parallel

    from .pool_size import cores
    from .worker import Chunk

    parallel = Parallel(n_jobs=n_jobs, backend="loky")
    n_workers = effective_n_jobs(parallel)
    if not runs_on_loky(parallel, n_workers):
        return 0
    n_workers = min(n_workers, cores())
    pool = LokyPool(parallel, workers=n_workers)
    try:
        tasks = [pool.submit(Chunk(abs, [(0, (0,))])) for _ in range(n_workers)]
        for task in tasks:
            task.result()
    finally:
        pool.close()  # the run folder only: the workers stay warm
    return n_workers


def track_folder(path):
    """Have loky's resource tracker (a process that outlives a killed
    kernel) remove ``path`` if this process exits without doing so."""
    from joblib.externals.loky.backend import resource_tracker

    resource_tracker.register(path, "folder")


def untrack_folder(path):
    from joblib.externals.loky.backend import resource_tracker

    resource_tracker.unregister(path, "folder")


def count_only_private_memory():
    """In a loky worker: make loky's memory-leak check count the memory
    this process owns, not the shared-memory pages it maps (``shared_data``).

    loky restarts a worker whose resident size grew by 300 MB since its
    first task, taking it for a leak; a worker that maps a 200 MB notebook
    array would be restarted again and again. Pages mapped from files are
    shared with the notebook and every other worker, so they are left out.
    """
    import sys

    loop = sys.modules.get("joblib.externals.loky.process_executor")
    if loop is None or not getattr(loop, "_USE_PSUTIL", False):
        return  # not in a loky worker, or loky does not measure memory
    if getattr(loop._get_memory_usage, "counts_private_memory", False):
        return
    import gc

    from psutil import Process

    def private_memory(pid, force_gc=False):
        if force_gc:
            gc.collect()
        info = Process(pid).memory_info()
        return info.rss - getattr(info, "shared", 0)

    private_memory.counts_private_memory = True
    loop._get_memory_usage = private_memory
