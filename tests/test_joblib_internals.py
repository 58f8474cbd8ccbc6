"""Every joblib/loky name parmagic relies on without joblib documenting it
(all used in parmagic/joblib_internals.py) still exists, and the pools it
builds from them behave: if an upgrade moves one, this fails by name."""

import importlib

import pytest
from joblib import Parallel

from parmagic import joblib_internals as internals
from parmagic.worker import Chunk

MODULE_NAMES = [
    ("joblib.parallel", "BACKENDS"),
    ("joblib.parallel", "get_active_backend"),
    ("joblib.executor", "MemmappingExecutor"),
    ("joblib.executor", "_executor_args"),
    ("joblib._memmapping_reducer", "TemporaryResourcesManager"),
    ("joblib._memmapping_reducer", "get_memmapping_reducers"),
    ("joblib._parallel_backends", "LokyBackend"),
    ("joblib._parallel_backends", "MultiprocessingBackend"),
    ("joblib._parallel_backends", "SequentialBackend"),
    ("joblib.externals.loky.reusable_executor", "_executor"),
    ("joblib.pool", "PicklingPool"),
]
PARALLEL_NAMES = ["_backend", "_backend_kwargs", "_id", "_effective_n_jobs",
                  "_initialize_backend", "n_jobs"]
BACKEND_NAMES = ["_prepare_worker_env", "backend_kwargs", "effective_n_jobs"]
EXECUTOR_NAMES = ["_temp_folder_manager", "_flags", "terminate", "submit", "shutdown"]
MANAGER_NAMES = ["set_current_context", "register_new_context", "_clean_temporary_resources"]


@pytest.mark.parametrize("module, name", MODULE_NAMES)
def test_module_level_names_exist(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone"


@pytest.mark.parametrize("private", [False, True], ids=["shared pool", "own pool"])
def test_a_pool_built_from_them_runs_chunks_and_cleans_up(private):
    parallel = Parallel(n_jobs=2, backend="loky")
    for name in PARALLEL_NAMES:
        assert hasattr(parallel, name), f"joblib.Parallel.{name} is gone"
    for name in BACKEND_NAMES:
        assert hasattr(internals.backend_of(parallel), name), f"LokyBackend.{name} is gone"
    assert internals.runs_on_loky(parallel, internals.effective_n_jobs(parallel))
    pool = internals.LokyPool(parallel, private=private)
    try:
        batch = pool.submit(Chunk(abs, [(0, (-3,)), (1, (4,))], on_pickle=pool.use_run_folder))
        assert batch.result(timeout=60).values == [3, 4]
        if not private:  # the pool joblib's own configure() built
            assert hasattr(internals.backend_of(parallel), "_workers")
        for name in EXECUTOR_NAMES:
            assert hasattr(pool.executor, name), f"the loky executor's {name} is gone"
        for name in MANAGER_NAMES:
            assert hasattr(pool.executor._temp_folder_manager, name), (
                f"joblib's TemporaryResourcesManager.{name} is gone")
        executor = pool.executor
    finally:
        pool.close()
    assert executor._flags.shutdown is private  # only an own pool goes away


def test_a_private_pool_is_not_joblibs_shared_one():
    from joblib.externals.loky import reusable_executor

    parallel = Parallel(n_jobs=2, backend="loky")
    shared, own = internals.LokyPool(parallel), internals.LokyPool(parallel, private=True)
    try:
        for pool in (shared, own):
            pool.submit(Chunk(abs, [(0, (1,))])).result(timeout=60)
        assert shared.executor is reusable_executor._executor
        assert own.executor is not shared.executor
        own.kill()  # stopping one run's pool ...
        assert shared.submit(Chunk(abs, [(0, (-2,))])).result(timeout=60).values == [2]
    finally:
        shared.close()
        own.close()
