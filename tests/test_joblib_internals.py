"""Every joblib/loky name parmagic relies on without joblib documenting it
(all used in parmagic/joblib_internals.py, and three of cloudpickle's) still exists, and the pools it
builds from them behave: if an upgrade moves one, this fails by name."""

import concurrent.futures
import importlib
import os
import signal

import joblib
import psutil
import pytest
from joblib import Parallel
from platforms import needs_posix

from parmagic import joblib_internals as internals
from parmagic.worker import Chunk

MODULE_NAMES = [
    ("joblib.parallel", "BACKENDS"),
    ("joblib.parallel", "get_active_backend"),
    ("joblib.parallel", "_backend"),
    ("joblib.parallel", "DEFAULT_BACKEND"),
    ("joblib.parallel", "default_parallel_config"),
    ("joblib.externals.loky", "ProcessPoolExecutor"),
    ("joblib.externals.loky.backend.resource_tracker", "register"),
    ("joblib.externals.loky.backend.resource_tracker", "unregister"),
    ("joblib._parallel_backends", "LokyBackend"),
    ("joblib._parallel_backends", "MultiprocessingBackend"),
    ("joblib._parallel_backends", "SequentialBackend"),
    ("joblib.externals.loky.reusable_executor", "_executor"),
    ("joblib.pool", "PicklingPool"),
    ("joblib.externals.loky.process_executor", "_get_memory_usage"),
    ("joblib.externals.loky.process_executor", "_USE_PSUTIL"),
    # cloudpickle's, read by parmagic/error_transport.py (which falls back
    # to plain unpickling without them, losing the notebook's class methods)
    ("cloudpickle.cloudpickle", "_DYNAMIC_CLASS_TRACKER_BY_ID"),
    ("cloudpickle.cloudpickle", "_make_skeleton_class"),
    ("cloudpickle.cloudpickle", "_class_setstate"),
    # the standard library's, read by joblib_internals.at_exit_before_threads_stop
    ("threading", "_register_atexit"),
]
PARALLEL_NAMES = ["_backend", "_backend_kwargs", "_effective_n_jobs", "n_jobs"]
# joblib.Parallel._backend_kwargs: "context", the multiprocessing context it starts with
BACKEND_NAMES = ["_prepare_worker_env", "backend_kwargs", "effective_n_jobs",
                 "MAX_NUM_THREADS_VARS", "TBB_ENABLE_IPC_VAR", "inner_max_num_threads"]
EXECUTOR_NAMES = ["_flags", "submit", "shutdown", "_processes", "_call_queue",
                  "_ensure_executor_running"]
FLAGS_NAMES = ["broken", "shutdown", "kill_workers"]


@pytest.mark.parametrize("module, name", MODULE_NAMES)
def test_module_level_names_exist(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone"


def test_a_parallel_config_block_changes_the_configuration_and_puts_it_back():
    def check():
        before = internals.configuration()
        with joblib.parallel_config(backend="threading"):
            inside = internals.configuration()
            assert inside[0] is not before[0]
        return all(a is b for a, b in zip(internals.configuration(), before))

    assert check()
    # a new thread has had no parallel_config yet (joblib's are per thread)
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        assert thread.submit(check).result()


@pytest.mark.parametrize("private", [False, True], ids=["warm pool", "own pool"])
def test_a_pool_built_from_them_runs_chunks_and_cleans_up(private):
    parallel = Parallel(n_jobs=2, backend="loky")
    for name in PARALLEL_NAMES:
        assert hasattr(parallel, name), f"joblib.Parallel.{name} is gone"
    for name in BACKEND_NAMES:
        assert hasattr(internals.backend_of(parallel), name), f"LokyBackend.{name} is gone"
    assert internals.runs_on_loky(parallel, internals.effective_n_jobs(parallel))
    internals.shutdown_pools()
    pool = internals.LokyPool(parallel, private=private)
    try:
        batch = pool.submit(Chunk(abs, [(0, (-3,)), (1, (4,))]))
        assert batch.result(timeout=60).values == [3, 4]
        for name in EXECUTOR_NAMES:
            assert hasattr(pool.executor, name), f"the loky executor's {name} is gone"
        for name in FLAGS_NAMES:
            assert hasattr(pool.executor._flags, name), f"loky's executor flag {name} is gone"
        executor = pool.executor
    finally:
        pool.close()
    assert executor._flags.shutdown is private  # only an own pool goes away


def test_the_warm_pool_is_parmagics_own_and_one_run_at_a_time_uses_it():
    from joblib.externals.loky import reusable_executor

    parallel = Parallel(n_jobs=2, backend="loky")
    warm, meanwhile = internals.LokyPool(parallel), internals.LokyPool(parallel)
    try:
        warm.submit(Chunk(abs, [(0, (1,))])).result(timeout=60)
        assert warm.executor is not reusable_executor._executor  # not joblib's
        # a second run while the first has it: a pool of its own
        assert meanwhile.submit(Chunk(abs, [(0, (-2,))])).result(timeout=60).values == [2]
        assert meanwhile.private and meanwhile.executor is not warm.executor
        meanwhile.kill()  # stopping one run's pool ...
        assert warm.submit(Chunk(abs, [(0, (-3,))])).result(timeout=60).values == [3]
        executor = warm.executor
    finally:
        warm.close()
        meanwhile.close()
    later = internals.LokyPool(parallel)
    try:  # the next run finds the warm pool again
        later.submit(Chunk(abs, [(0, (4,))])).result(timeout=60)
        assert later.executor is executor and not later.private
    finally:
        later.close()
    # and joblib's own pool is untouched by all this
    assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(i) for i in (-1, -2)) == [1, 2]


@needs_posix("SIGINT sent with os.kill")
@pytest.mark.parametrize("private", [False, True], ids=["warm pool", "own pool"])
def test_workers_hit_by_an_interrupt_while_starting_live_on(private):
    # Jupyter's interrupt reaches the kernel's whole process group, workers
    # included, maybe before they have started far enough to ignore it.
    internals.shutdown_pools()
    pool = internals.LokyPool(Parallel(n_jobs=2, backend="loky"), private=private)
    try:
        first = pool.submit(Chunk(abs, [(0, (-1,))]))
        starting = [p for p in psutil.Process().children()
                    if "LokyProcess" in " ".join(p.cmdline())]
        assert len(starting) == 2
        for worker in starting:
            os.kill(worker.pid, signal.SIGINT)
        assert first.result(timeout=60).values == [1]
        later = [pool.submit(Chunk(abs, [(i, (-i,))])) for i in range(4)]
        assert [f.result(timeout=60).values for f in later] == [[0], [1], [2], [3]]
        assert all(worker.is_running() for worker in starting)
    finally:
        pool.close()


def test_the_warm_pool_stops_after_its_idle_timeout_and_the_next_run_starts_another():
    from waiting import until

    from parmagic import pmap

    def pids():
        return set(pmap(os.getpid, [()] * 4, n_jobs=2, star=True))

    with joblib.parallel_config(backend="loky", idle_worker_timeout=1):
        first = pids()
        until(lambda: not any(psutil.pid_exists(pid) for pid in first),
              "the idle workers to stop")
        assert pids().isdisjoint(first)


def worker_thread_limit(_):
    return os.environ.get("OMP_NUM_THREADS")


def test_a_thread_limit_set_between_runs_reaches_the_workers_of_the_next(monkeypatch):
    # the warm pool is kept only while the environment its workers got from
    # (read through os.environ's own dict, see environment_values) is the same
    from parmagic import pmap

    for limit in ("3", "1", "3"):
        monkeypatch.setenv("OMP_NUM_THREADS", limit)
        assert set(pmap(worker_thread_limit, range(4), n_jobs=2)) == {limit}
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert internals.environment_values(("OMP_NUM_THREADS",)) == [None]
