"""The one module that touches joblib's and loky's private names.

parmagic drives joblib's loky pool through its futures (see ``pool.py``) and
reads a few facts off ``joblib.Parallel`` objects. Every name joblib does not
document is used here and nowhere else, and ``tests/test_joblib_internals.py``
checks each one exists, so a joblib upgrade that moves one fails that test
by name instead of breaking a run. pyproject.toml pins the joblib versions
this was tested with.

Pools: a foreground run uses parmagic's warm pool, a loky executor kept
between runs, configured as joblib would configure its own (thread limits,
idle timeout). Its workers serve parmagic's direct connections
(``channels``) and take no other tasks, so it is not joblib's shared pool:
a ``joblib.Parallel`` call starts that one as usual. A background run gets a
private pool of its own (``LokyPool(private=True)``), so stopping, crashing
or timing out any other run never touches its workers, and its end removes
its own workers and temporary files only.
"""

import contextlib
import functools
import multiprocessing.pool
import os
import signal
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

from joblib import parallel as joblib_parallel
from joblib._parallel_backends import (
    LokyBackend,
    MultiprocessingBackend,
    SequentialBackend,
    ThreadingBackend,
)
from joblib.externals.loky import ProcessPoolExecutor, reusable_executor

from .own_modules import installed_version
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


def pickles_by_name(parallel):
    """What of a task ``parallel`` would pickle by name where the notebook's
    own must go by value: None, except on joblib's multiprocessing backend,
    whose pool pickles with the standard pickler: "function" (a notebook
    function is found by name only in a forked worker, a lambda nowhere),
    and "call" with workers started by spawn or forkserver (the default on
    macOS and Windows, and on Linux from Python 3.14), which import a
    ``__main__`` of their own without the notebook's classes either. loky,
    dask and Ray send the notebook's by value themselves."""
    if type(parallel._backend) is not MultiprocessingBackend:
        return None
    context = parallel._backend_kwargs.get("context")
    forks = context is not None and context.get_start_method() == "fork"
    return "function" if forks else "call"


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


def configuration():
    """What a new ``joblib.Parallel`` takes from its surroundings besides its
    arguments: this thread's ``parallel_config`` (each ``with`` block puts a
    new object in place and puts the old one back after), and the default
    backend's name and class. While each is the same object, a new Parallel
    with the same arguments would be the same as the last."""
    name = joblib_parallel.DEFAULT_BACKEND
    config = getattr(joblib_parallel._backend, "config", joblib_parallel.default_parallel_config)
    return config, name, joblib_parallel.BACKENDS.get(name)


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

    def __init__(self, parallel, private=False, workers=None, n_jobs=None, max_tasks=None):
        self.parallel = parallel
        self.max_tasks = max_tasks  # items a worker runs before it is replaced
        self.private = private
        self.n_jobs = n_jobs or effective_n_jobs(parallel)
        self.workers = workers or self.n_jobs
        self.executor = None  # started with the first submission
        self.channels = None
        self.starts = []

    def submit(self, task, items=1):
        """Submit ``task`` (a callable that pickles, running ``items``
        items); returns its future."""
        if self.channels is None:
            self._start()
            self.channels.max_tasks = self.max_tasks
        return self.channels.submit(task, items)

    def wait(self, futures, timeout):
        """The ``futures`` done once one is, or ``timeout`` has passed."""
        if self.channels is None:
            return {future for future in futures if future.done()}
        return self.channels.wait(futures, timeout)

    def _start(self):
        if not self.private:  # the warm-up thread may still be starting it
            self._wait_for_warm_up()
        asked, began = time.time(), time.perf_counter()
        before = set() if self.private else _worker_pids(_warm.get("executor"))
        pool = (None if self.private
                else _take_warm_pool(self.parallel, self.workers, self.n_jobs))
        if pool is None:  # asked for, or the warm pool is busy with another run
            self.private = True
            pool = _new_pool(self.parallel, self.workers)
        self.executor, self.channels = pool
        after = _worker_pids(self.executor)
        self.starts.append(PoolStart(
            asked, time.perf_counter() - began, len(after - before),
            frozenset(after - before), len(before - after)))

    def _wait_for_warm_up(self):
        from . import warmup

        waited = warmup.wait()
        if waited is not None:
            seconds, n_workers = waited
            self.starts.append(PoolStart(time.time() - seconds, seconds, n_workers))

    def worker_pids(self):
        """Process ids of the workers serving this run now (none before the
        first submission)."""
        return _worker_pids(self.executor)

    def kill(self):
        """Kill the workers now; the next submission starts fresh ones."""
        if self.executor is None:
            return
        if not self.private:
            _forget_warm_pool(self.executor)
        _stop(self.executor, self.channels, wait=True, kill=True)
        self.executor = self.channels = None

    def close(self):
        """The run is over: a private pool goes away (the time that takes
        is in ``starts``); the warm one stays for the next run."""
        if self.executor is None:
            return
        if self.private:
            began, workers = time.perf_counter(), len(_worker_pids(self.executor))
            self.kill()
            self.starts.append(PoolStart(
                time.time(), time.perf_counter() - began, 0, stopped=workers))
        elif self.channels.idle():
            self.channels.max_tasks = None  # this run's limit
            self.channels.run_over()
            _return_warm_pool(self.executor)
        else:  # chunks of this run still out: the next run must not get them
            self.kill()
        self.executor = self.channels = None


def _worker_pids(executor):
    """Process ids of ``executor``'s workers (started or starting); none
    for a pool that was shut down or broke (its workers are gone)."""
    if executor is None or executor._flags.broken or executor._flags.shutdown:
        return set()
    return set(executor._processes)


# How long a worker let go for max_tasks has to exit before it is killed.
_RETIRE_TIMEOUT = 30.0


def retire_worker(executor, pid, spawning=contextlib.nullcontext):
    """Replace ``executor``'s idle worker ``pid``, whose ``serve`` task has
    ended, by a fresh process (within ``spawning()``).

    It exits as at loky's own shutdown, on the None it reads from the call
    queue (only it reads it: every other worker is serving), and loky
    forgets it without breaking the pool. The fresh worker is started here,
    before the next task is submitted: loky warns that "a worker stopped
    while some jobs were given" when it finds a task waiting while it has
    fewer workers than it should, and it looks just after the old one
    exits."""
    from multiprocessing.connection import wait

    process = executor._processes.get(pid)
    if process is not None:
        executor._call_queue.put(None)
        if not wait([process.sentinel], _RETIRE_TIMEOUT):
            process.terminate()  # breaks the pool: its chunks fail as a crash
            raise BrokenProcessPool(
                "a worker let go after max_tasks_per_worker items did not exit "
                f"within {_RETIRE_TIMEOUT:g} s and was stopped")
    with spawning():
        executor._ensure_executor_running()


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


# parmagic's warm pool: executor, channels, how it was configured (key), and
# whether a run has it now (in_use).
_warm = {}
_warm_lock = threading.Lock()
# Every pool whose workers serve parmagic's channels (for shutdown_pools).
_open_pools = weakref.WeakKeyDictionary()  # executor -> its Channels


def _take_warm_pool(parallel, workers, n_jobs):
    """(executor, channels) of the warm pool, configured as ``parallel``
    would be, with at least ``workers`` workers and at most ``n_jobs``
    (``parallel``'s), marked in use; None if another run has it.

    A warm pool configured the same way with enough workers is used as it
    is; otherwise a new one of ``workers`` replaces it (loky's plain
    executor cannot grow: more workers than a pool has cost a new pool).
    So does one whose workers started before a package was installed,
    upgraded or removed: they hold the old version's modules, which cannot
    be reloaded in place (compiled ones least of all)."""
    backend = parallel._backend
    key = repr((_worker_env_inputs(backend), backend.backend_kwargs,
                parallel._backend_kwargs, installed_version()))
    with _warm_lock:
        if _warm.get("in_use"):
            return None
        executor, channels = _warm.get("executor"), _warm.get("channels")
        if executor is not None and (
            key != _warm["key"] or executor._flags.broken or executor._flags.shutdown
            or not workers <= len(channels) <= n_jobs
        ):
            _stop(executor, channels)
            executor = None
        if executor is None:
            executor, channels = _new_pool(parallel, workers)
        _warm.update(executor=executor, channels=channels, key=key, in_use=True,
                     idle_timeout=_idle_timeout(parallel))
        return executor, channels


def _return_warm_pool(executor):
    with _warm_lock:
        if _warm.get("executor") is executor:
            _warm["in_use"] = False
            _warm["last_used"] = time.monotonic()
    if not _idle_watch:
        _idle_watch.append(threading.Thread(target=_stop_when_idle, daemon=True,
                                            name="parmagic-idle-pool"))
        _idle_watch[0].start()


_idle_watch = []


def _stop_when_idle():
    """Stop the warm pool once no run has used it for its idle timeout, as
    loky stops idle workers (its own timeout never fires: a worker serving
    a channel is never idle for loky). Runs for the process's lifetime,
    waking when the pool would time out."""
    while True:
        with _warm_lock:
            due = (_warm["last_used"] + _warm["idle_timeout"]
                   if _warm and not _warm["in_use"] else None)
            if due is not None and time.monotonic() >= due:
                executor, channels = _warm["executor"], _warm["channels"]
                _warm.clear()
                _stop(executor, channels)
                due = None
        delay = _IDLE_CHECK_EVERY if due is None else max(0.0, due - time.monotonic())
        time.sleep(min(delay, _IDLE_CHECK_EVERY))


# How often the idle watch looks at a pool that is in use or gone.
_IDLE_CHECK_EVERY = 2.0


def _forget_warm_pool(executor):
    with _warm_lock:
        if _warm.get("executor") is executor:
            _warm.clear()


def _idle_timeout(parallel):
    options = {**parallel._backend.backend_kwargs, **parallel._backend_kwargs}
    return options.get("idle_worker_timeout", _IDLE_WORKER_TIMEOUT)


def _new_pool(parallel, n_workers):
    """(executor, channels): a loky executor of ``n_workers`` with the
    worker environment and idle timeout joblib would give its own pool, and
    its workers' channels (tasks pickle themselves, so joblib's memmapping
    reducers are not needed). For the warm pool or for one run alone."""
    backend = parallel._backend
    executor = ProcessPoolExecutor(
        max_workers=n_workers,
        initializer=prepare_worker,
        initargs=(os.getpid(),),
        timeout=_idle_timeout(parallel),
        env=backend._prepare_worker_env(n_jobs=n_workers),
    )
    # At exit loky waits for its workers' tasks to end, and a worker's serve
    # task ends only when its channel closes, which the notebook's own exit
    # hooks would do too late (loky's run first): have loky kill these workers
    # then instead (it reads this flag only when shutting down).
    executor._flags.kill_workers = True
    try:
        return executor, _open(executor, n_workers)
    except BaseException:
        executor.shutdown(wait=True, kill_workers=True)
        raise


def _open(executor, n_workers):
    from .channels import Channels

    # workers (and loky's threads) start as the channels' tasks are submitted
    channels = Channels(executor, n_workers, spawning=_interrupts_held)
    _open_pools[executor] = channels
    return channels


def _stop(executor, channels, wait=False, kill=False):
    """Shut a pool down, waiting for its workers or not, or killing them.
    Its channels close first: their serve tasks end, so that a shutdown
    need not wait for them."""
    channels.close()
    _open_pools.pop(executor, None)
    executor.shutdown(wait=wait, kill_workers=kill)


def _worker_env_inputs(backend):
    """What ``backend._prepare_worker_env`` depends on, except the CPU
    count: computing the environment reads the cgroup files on every call
    (a tenth of a warm small run's time), while the CPU limit of a running
    kernel practically never changes."""
    names = (*backend.MAX_NUM_THREADS_VARS, backend.TBB_ENABLE_IPC_VAR)
    return backend.inner_max_num_threads, environment_values(names)


def environment_values(names):
    """The values of the environment variables ``names`` (None if unset),
    as bytes read straight from the dict behind ``os.environ`` where there
    is one (POSIX): ``os.environ.get`` encodes the name and decodes the
    value, 2 us a variable, and these are read on every run."""
    data = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(data, dict):
        return [os.environ.get(name) for name in names]
    return [data.get(name) for name in _encoded(names)]


@functools.lru_cache(maxsize=16)
def _encoded(names):
    return tuple(map(os.fsencode, names))


def shutdown_pools(kill=False):
    """Stop parmagic's pools (the warm one and private ones still running)
    and joblib's own shared pool."""
    with _warm_lock:
        _warm.clear()
    for executor, channels in list(_open_pools.items()):
        _stop(executor, channels, wait=True, kill=kill)
    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=kill)


def start_warm_pool(n_jobs):
    """Start parmagic's warm pool with ``n_jobs`` workers, as the first run
    will ask for it, and wait until every worker has connected (so it has
    imported what a task needs). Returns the number of workers.

    No more workers than cores: a run that needs more has a pool of its
    own (``pool_size``), so more would only wait, unused."""
    from joblib import Parallel

    from .channels import exiting
    from .pool_size import cores
    from .worker import Chunk

    parallel = Parallel(n_jobs=n_jobs, backend="loky")
    n_workers = effective_n_jobs(parallel)
    if not runs_on_loky(parallel, n_workers) or exiting.is_set():
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


def at_exit_before_threads_stop(hook):
    """Run ``hook`` at interpreter exit while other threads still run: among
    ``threading``'s exit hooks, which run before ``atexit``'s and before
    daemon threads are stopped, last registered first. loky shuts its pools
    down in such a hook, registered when its first pool starts: a hook
    registered after that runs before it. A hook is registered once: a
    later call for it changes nothing (it keeps its place)."""
    with _at_exit_lock:
        if hook in _at_exit:
            return
        _at_exit.add(hook)
    threading._register_atexit(hook)


_at_exit = set()  # the hooks at_exit_before_threads_stop has registered
_at_exit_lock = threading.Lock()


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
