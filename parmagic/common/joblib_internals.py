"""The one module that touches joblib's and loky's private names.

parmagic drives loky executors of its own (``engine.loky_pool``) and reads
a few facts off ``joblib.Parallel`` objects. Every name joblib or loky does
not document is used here and nowhere else, and
``tests/test_joblib_internals.py`` checks each one exists, so an upgrade
that moves one fails that test by name instead of breaking a run.
pyproject.toml pins the joblib versions this was tested with. It imports
nothing else of parmagic.
"""

import contextlib
import functools
import gc
import multiprocessing.pool
import os
import sys
import threading
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait

from joblib import parallel as joblib_parallel
from joblib._parallel_backends import (
    LokyBackend,
    MultiprocessingBackend,
    SequentialBackend,
    ThreadingBackend,
)
from joblib.externals.loky import ProcessPoolExecutor, reusable_executor

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


def runs_multiprocessing_pool(parallel):
    """Whether ``parallel`` runs on joblib's multiprocessing backend."""
    return type(parallel._backend) is MultiprocessingBackend


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


def backend_name_configured():
    """The name of the backend a new ``joblib.Parallel`` would use here
    (an enclosing ``parallel_config``'s, else joblib's default)."""
    backend, _ = configured_backend()
    name = type(backend).__name__
    return name.removesuffix("Backend").lower() or name


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


def keep_memmaps_in(parallel, folder):
    """Have ``parallel`` (joblib's multiprocessing backend) make its
    temporary folder for large arguments inside ``folder``, unless the call,
    an enclosing ``parallel_config`` or ``JOBLIB_TEMP_FOLDER`` names one:
    left to itself, joblib makes it in /dev/shm with ``os.makedirs`` and
    the umask's mode (0755, or 0777), open to every user of the machine."""
    if (parallel._backend_kwargs.get("temp_folder") is None
            and not os.environ.get("JOBLIB_TEMP_FOLDER")):
        parallel._backend_kwargs["temp_folder"] = folder


def forkserver_running():
    """Whether multiprocessing's forkserver (which joblib's multiprocessing
    backend starts its workers from under that start method) is running.
    Only its module starts it, so where nothing imported that module (the
    fork and spawn methods; Windows has no forkserver) none runs."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    return forkserver is not None and forkserver._forkserver._forkserver_pid is not None


def stop_forkserver():
    from multiprocessing import forkserver

    forkserver._forkserver._stop()


# -- loky executors ---------------------------------------------------------------
def new_executor(parallel, n_workers, initializer, initargs):
    """A loky executor of ``n_workers`` with the worker environment (thread
    limits) and idle timeout joblib would give its own pool for ``parallel``."""
    executor = ProcessPoolExecutor(
        max_workers=n_workers,
        initializer=initializer,
        initargs=initargs,
        timeout=idle_timeout(parallel),
        env=parallel._backend._prepare_worker_env(n_jobs=n_workers),
    )
    # At exit loky waits for its workers' tasks to end, and a worker's serve
    # task ends only when its channel closes, which the notebook's own exit
    # hooks would do too late (loky's run first): have loky kill these workers
    # then instead (it reads this flag only when shutting down).
    executor._flags.kill_workers = True
    return executor


def usable(executor):
    """Whether ``executor`` was neither shut down nor broken by a crash."""
    return not (executor._flags.broken or executor._flags.shutdown)


def worker_pids(executor):
    """Process ids of ``executor``'s workers (started or starting); none
    for a pool that was shut down or broke (its workers are gone)."""
    if executor is None or not usable(executor):
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


def idle_timeout(parallel):
    """How long ``parallel``'s idle workers wait before they exit."""
    options = {**parallel._backend.backend_kwargs, **parallel._backend_kwargs}
    return options.get("idle_worker_timeout", _IDLE_WORKER_TIMEOUT)


def pool_settings(parallel):
    """What the workers of a pool for ``parallel`` are configured from, as a
    string: two runs with the same can share workers."""
    backend = parallel._backend
    return repr((_worker_env_inputs(backend), backend.backend_kwargs, parallel._backend_kwargs))


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


def shut_down_shared_pool(kill=False):
    """Stop joblib's own shared loky pool, if it is running."""
    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=kill)


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
    loop = sys.modules.get("joblib.externals.loky.process_executor")
    if loop is None or not getattr(loop, "_USE_PSUTIL", False):
        return  # not in a loky worker, or loky does not measure memory
    if getattr(loop._get_memory_usage, "counts_private_memory", False):
        return
    from psutil import Process

    def private_memory(pid, force_gc=False):
        if force_gc:
            gc.collect()
        info = Process(pid).memory_info()
        return info.rss - getattr(info, "shared", 0)

    private_memory.counts_private_memory = True
    loop._get_memory_usage = private_memory
