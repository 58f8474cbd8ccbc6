"""``engine.loky_pool`` and ``engine.warm_pool``: the loky pools parmagic
builds from joblib's private names run chunks, clean up, keep one warm pool
that one run at a time uses, survive an interrupt while starting and stop
when idle."""

import os
import signal

import joblib
import psutil
import pytest
from joblib import Parallel
from platforms import needs_posix

from parmagic.common import joblib_internals as internals
from parmagic.engine.loky_pool import LokyPool
from parmagic.engine.warm_pool import shutdown_pools
from parmagic.worker.chunk import Chunk


@pytest.mark.parametrize("private", [False, True], ids=["warm pool", "own pool"])
def test_a_pool_runs_chunks_and_cleans_up(private):
    parallel = Parallel(n_jobs=2, backend="loky")
    assert internals.runs_on_loky(parallel, internals.effective_n_jobs(parallel))
    shutdown_pools()
    pool = LokyPool(parallel, private=private)
    try:
        batch = pool.submit(Chunk(abs, [(0, (-3,)), (1, (4,))]))
        assert batch.result(timeout=60).values == [3, 4]
        executor = pool.executor
    finally:
        pool.close()
    assert executor._flags.shutdown is private  # only an own pool goes away


def test_the_warm_pool_is_parmagics_own_and_one_run_at_a_time_uses_it():
    from joblib.externals.loky import reusable_executor

    parallel = Parallel(n_jobs=2, backend="loky")
    warm, meanwhile = LokyPool(parallel), LokyPool(parallel)
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
    later = LokyPool(parallel)
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
    shutdown_pools()
    pool = LokyPool(Parallel(n_jobs=2, backend="loky"), private=private)
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


def test_shutting_down_while_the_warm_up_starts_the_pool_leaves_no_worker():
    from processes import worker_processes

    from parmagic import shutdown_workers
    from parmagic.engine import warmup

    shutdown_pools()
    warming = warmup.start(2)  # as %load_ext does, in the background
    shutdown_workers()
    warming.join(timeout=60)  # what it started, it started before the shutdown
    _, alive = psutil.wait_procs(worker_processes(), timeout=20)
    assert not alive
