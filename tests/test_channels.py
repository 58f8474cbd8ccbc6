"""channels: chunks go straight to loky workers on connections of their own."""

import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool

import pytest
from joblib import Parallel
from platforms import forces_fallback, needs_linux, needs_posix

from parmagic.engine.loky_pool import LokyPool
from parmagic.transport.channels import NotSent
from parmagic.worker.chunk import Chunk


def pid_of(_):
    return os.getpid()


@pytest.fixture
def pool():
    pool = LokyPool(Parallel(n_jobs=2, backend="loky"), private=True)
    yield pool
    pool.close()


def test_each_chunk_goes_to_an_idle_worker_first(pool):
    futures = [pool.submit(Chunk(pid_of, [(i, (i,))])) for i in range(2)]
    pids = {future.result(timeout=60).values[0] for future in futures}
    assert pids == set(pool.executor._processes)  # one chunk each, not both on one


def test_more_chunks_than_workers_all_come_back_in_their_futures(pool):
    futures = [pool.submit(Chunk(abs, [(i, (-i,))])) for i in range(20)]
    assert [future.result(timeout=60).values for future in futures] == [[i] for i in range(20)]


def test_a_task_that_cannot_be_pickled_fails_its_own_future_only(pool):
    lock = threading.Lock()
    refused = pool.submit(Chunk(lambda x: lock, [(0, (1,))]))
    with pytest.raises(NotSent, match="could not be pickled"):
        refused.result(timeout=60)
    assert pool.submit(Chunk(abs, [(0, (-7,))])).result(timeout=60).values == [7]


@needs_posix("SIGKILL")
def test_a_dead_worker_fails_what_was_on_its_way_with_loky_s_exit_codes(pool):
    def die(_):
        os.kill(os.getpid(), signal.SIGKILL)

    future = pool.submit(Chunk(die, [(0, (0,))]))
    with pytest.raises(BrokenProcessPool, match=r"SIGKILL"):
        future.result(timeout=60)
    pool.kill()  # as a run does: the next chunk starts fresh workers
    assert pool.submit(Chunk(abs, [(0, (-1,))])).result(timeout=60).values == [1]


@needs_posix("SIGKILL")
@pytest.mark.parametrize("swapped", [False, True], ids=["as paired", "swapped"])
def test_a_worker_dying_beside_one_replaced_after_max_tasks_gets_loky_s_exit_codes(swapped):
    def die(_):
        os.kill(os.getpid(), signal.SIGKILL)

    pool = LokyPool(Parallel(n_jobs=2, backend="loky"), private=True, max_tasks=1)
    try:
        first = pool.submit(Chunk(pid_of, [(0, (0,))]))  # to the first worker
        replaced = first.result(timeout=60).values[0]
        # connections and serve tasks are paired in no particular order: a
        # dead worker's reason must not be read from the replaced one's task
        one, other = pool.channels.channels
        if swapped:
            one.serving, other.serving = other.serving, one.serving
        dying = pool.submit(Chunk(die, [(1, (1,))]))  # the first is replaced first
        assert replaced not in pool.executor._processes
        with pytest.raises(BrokenProcessPool, match=r"SIGKILL"):
            dying.result(timeout=60)
    finally:
        pool.close()


def test_waiting_returns_when_the_time_is_up(pool):
    import time

    slow = pool.submit(Chunk(time.sleep, [(0, (1.0,))]))
    assert pool.wait([slow], 0.05) == set()
    assert not slow.done()  # it returned at its time limit, not when the item ended
    assert pool.wait([slow], 30) == {slow}


@pytest.fixture
def socket_folders(monkeypatch):
    """The socket folders channels makes in this process (not the machine's:
    another kernel may be connecting its own workers meanwhile)."""
    import tempfile

    from parmagic.transport import channels

    made, real_mkdtemp = [], tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(channels.tempfile, "mkdtemp", mkdtemp)
    return made


def test_connecting_leaves_no_socket_folder_behind(pool, socket_folders):
    pool.submit(Chunk(abs, [(0, (-1,))])).result(timeout=60)  # the workers have connected
    assert len(socket_folders) == 1  # this pool's, made here
    assert not os.path.exists(socket_folders[0])


def test_a_socket_that_cannot_be_made_leaves_no_folder_and_says_why(pool, socket_folders,
                                                                       monkeypatch):
    from parmagic.transport import channels

    def no_socket(*args):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(channels.socket, "socket", no_socket)
    with pytest.raises(OSError, match="Too many open files"):
        pool.submit(Chunk(abs, [(0, (-1,))]))
    assert len(socket_folders) == 1 and not os.path.exists(socket_folders[0])


@needs_linux("SCHED_BATCH")
def test_workers_run_as_batch_work_so_a_chunk_sent_does_not_preempt_the_notebook(pool):
    def policy(_):
        return os.sched_getscheduler(0)

    futures = [pool.submit(Chunk(policy, [(i, (i,))])) for i in range(2)]
    assert {future.result(timeout=60).values[0] for future in futures} == {os.SCHED_BATCH}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the notebook's own is untouched


def test_large_results_behind_small_chunks_do_not_stall_the_pool():
    # a worker busy writing a large result while its next chunk is sent:
    # the chunk fits the socket's buffer, so neither side waits on the other
    import subprocess
    import sys

    code = ("from parmagic import pmap\n"
            "r = pmap(lambda i: bytes(8_000_000), range(16), n_jobs=2, batch_size=1,"
            " progress=False)\n"
            "print(sum(map(len, r)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == str(16 * 8_000_000), done.stderr


def without_unix_sockets(monkeypatch, tmp_path):
    from parmagic.transport import channels

    monkeypatch.delattr(channels.socket, "AF_UNIX")


def with_a_long_temp_folder(monkeypatch, tmp_path):
    import tempfile

    long = tmp_path / ("x" * 100)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))


@forces_fallback("AF_UNIX, or a short enough socket path")
@pytest.mark.parametrize("setting", [without_unix_sockets, with_a_long_temp_folder],
                         ids=["no AF_UNIX (Windows)", "a long TMPDIR (macOS)"])
def test_workers_connect_where_a_unix_socket_cannot_be_made_here(setting, monkeypatch,
                                                                  tmp_path, socket_folders):
    setting(monkeypatch, tmp_path)
    pool = LokyPool(Parallel(n_jobs=2, backend="loky"), private=True)
    try:
        futures = [pool.submit(Chunk(pid_of, [(i, (i,))])) for i in range(2)]
        assert {f.result(timeout=60).values[0] for f in futures} == set(
            pool.executor._processes)
        chunks = [pool.submit(Chunk(abs, [(i, (-i,))])) for i in range(20)]
        assert [f.result(timeout=60).values for f in chunks] == [[i] for i in range(20)]
    finally:
        pool.close()
    assert all(len(os.path.join(folder, "s")) <= 103 for folder in socket_folders)
    assert not any(os.path.exists(folder) for folder in socket_folders)
