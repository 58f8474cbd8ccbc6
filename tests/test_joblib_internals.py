"""Every joblib/loky name parmagic relies on without joblib documenting it
(all used in parmagic/common/joblib_internals.py, and three of
cloudpickle's) still exists: if an upgrade moves one, this fails by name.
The pools built from them are checked in test_loky_pool.py."""

import concurrent.futures
import importlib
import os

import joblib
import pytest
from joblib import Parallel

from parmagic.common import joblib_internals as internals

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
    # cloudpickle's, read by parmagic/worker/error_transport.py (which falls back
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


def test_a_parallel_and_a_loky_executor_have_the_names_used():
    parallel = Parallel(n_jobs=2, backend="loky")
    for name in PARALLEL_NAMES:
        assert hasattr(parallel, name), f"joblib.Parallel.{name} is gone"
    for name in BACKEND_NAMES:
        assert hasattr(internals.backend_of(parallel), name), f"LokyBackend.{name} is gone"
    executor = internals.new_executor(parallel, 1, os.getpid, ())
    try:
        assert executor.submit(os.getpid).result(timeout=60) != os.getpid()
        for name in EXECUTOR_NAMES:
            assert hasattr(executor, name), f"the loky executor's {name} is gone"
        for name in FLAGS_NAMES:
            assert hasattr(executor._flags, name), f"loky's executor flag {name} is gone"
        assert internals.usable(executor) and len(internals.worker_pids(executor)) == 1
    finally:
        executor.shutdown(wait=True, kill_workers=True)
    assert not internals.usable(executor) and internals.worker_pids(executor) == set()


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
