"""Large arrays and DataFrames reach loky workers through shared memory, once
per version: never stale, copy-on-write, and nothing left behind."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
from cells import notebook_cell
from platforms import forces_fallback, needs_linux, needs_posix
from waiting import until

from parmagic import GlobalMutationWarning, WorkerCrashError, pmap, run
from parmagic.data import shared_data
from parmagic.data.shared_data import SharedStore

MB = 1 << 20


def test_array_items_are_shared_not_pickled():
    arrays = [np.full(1_000_000, float(i)) for i in range(4)]  # 8 MB each
    record = run(np.sum, [arrays], n_jobs=2)
    assert record.results == [a.sum() for a in arrays]
    shared, reused, pickled, _ = record.transfer
    assert shared + reused == sum(a.nbytes for a in arrays)
    assert pickled < 64 * 1024  # references only, not 32 MB of data


def notebook(source):
    return notebook_cell(source, np=np, pd=pd)


def test_a_global_array_is_copied_once_then_reused_and_changes_are_seen():
    cell = notebook("""
        BIG = np.arange(2_000_000, dtype=float)  # 16 MB
        def read_big(i):
            return float(BIG[i::4].sum())
    """)
    read_big, big = cell["read_big"], cell["BIG"]
    first = run(read_big, [range(4)], n_jobs=2)
    assert first.results == [read_big(i) for i in range(4)]
    assert first.transfer.pickled < 64 * 1024
    again = run(read_big, [range(4)], n_jobs=2)
    assert again.transfer.shared == 0 and again.transfer.reused == big.nbytes
    big += 1  # the same object, changed in place
    changed = run(read_big, [range(4)], n_jobs=2)
    assert changed.results == [r + big.size / 4 for r in first.results]
    assert changed.transfer.shared == big.nbytes


def test_a_global_unchanged_for_runs_then_changed_in_one_element_is_seen():
    # after a few runs that find it unchanged the array is no longer hashed
    # but watched (write_watch): one write must still make a new version
    cell = notebook("""
        BIG = np.zeros(2_000_000)  # 16 MB
        def read_big(i):
            return float(BIG[i * 500_000:(i + 1) * 500_000].sum())
    """)
    read_big, big = cell["read_big"], cell["BIG"]
    for _ in range(4):
        record = run(read_big, [range(4)], n_jobs=2)
        assert record.results == [0.0] * 4
    big[1_999_999] = 5.0
    changed = run(read_big, [range(4)], n_jobs=2)
    assert changed.results == [0.0, 0.0, 0.0, 5.0]
    assert changed.transfer.shared == big.nbytes


def test_writes_in_a_worker_stay_there_and_are_reported():
    cell = notebook("""
        BIG = np.zeros(2_000_000)
        def poke_big(i):
            BIG[i] = -1.0
            return float(BIG[:4].sum())
    """)
    with pytest.warns(GlobalMutationWarning, match="BIG"):
        results = pmap(cell["poke_big"], range(4), n_jobs=2, batch_size=1)
    assert not cell["BIG"].any()  # the notebook's array is untouched
    assert all(-4.0 <= r <= -1.0 for r in results)


@pytest.mark.parametrize("spoil", ["BIG[:] = 1.0", "BIG[1_234_567] = 1.0"],
                         ids=["every-page", "one-element"])
def test_what_one_run_wrote_in_a_worker_never_reaches_the_next_run(spoil):
    cell = notebook(f"""
        BIG = np.zeros(2_000_000)
        def spoil(i):
            {spoil}
        def total(i):
            return float(BIG.sum())
    """)
    with warnings.catch_warnings():
        # (a write to one element may fall between the mutation check's samples)
        warnings.simplefilter("ignore", GlobalMutationWarning)
        pmap(cell["spoil"], range(4), n_jobs=2, batch_size=1)
    assert pmap(cell["total"], range(4), n_jobs=2, batch_size=1) == [0.0] * 4


@needs_linux("/proc/self/pagemap, which tells a kept mapping is unwritten")
def test_a_worker_keeps_an_unwritten_mapping_for_the_next_run():
    # (that a written one is mapped afresh shows in the test above: a new
    # mapping may reuse the old one's addresses, so addresses cannot tell)
    cell = notebook("""
        import os
        BIG = np.zeros(2_000_000)
        def where(i):
            return os.getpid(), BIG.__array_interface__["data"][0]
    """)
    first = dict(pmap(cell["where"], range(6), n_jobs=2, batch_size=1))
    again = dict(pmap(cell["where"], range(6), n_jobs=2, batch_size=1))
    kept = [pid for pid in again if pid in first]
    assert kept, "the second run found none of the first run's workers"
    assert all(again[pid] == first[pid] for pid in kept)  # not mapped again


@pytest.mark.parametrize("make", [
    lambda: np.asfortranarray(np.random.rand(600, 500)),
    lambda: np.random.rand(1000, 900)[::2, ::3],  # not contiguous
    lambda: np.arange(3 * 200_000, dtype=np.int32).reshape(3, 200, 1000),
    lambda: np.zeros(200_000, dtype=[("x", "f8"), ("n", "i4"), ("flag", "?")]),
], ids=["fortran", "strided", "3d-int32", "structured"])
def test_arrays_of_every_layout_arrive_equal(make):
    array = make()
    assert array.nbytes >= MB
    (back,) = pmap(lambda a: a, [array], n_jobs=2)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


def test_a_dataframe_global_is_shared_and_round_trips():
    cell = notebook("""
        FRAME = pd.DataFrame({
            "x": np.arange(500_000, dtype=float),
            "y": np.random.rand(500_000),
            "name": [f"row{i}" for i in range(500_000)],
        })
        def frame_rows(i):
            return float(FRAME["x"].iloc[i * 1000: (i + 1) * 1000].sum()), FRAME["name"].iloc[i]
    """)
    frame_rows, frame = cell["frame_rows"], cell["FRAME"]
    record = run(frame_rows, [range(4)], n_jobs=2)
    assert record.results == [frame_rows(i) for i in range(4)]
    assert record.transfer.shared + record.transfer.reused >= 2 * 8 * 500_000
    (back,) = pmap(lambda df: df, [frame], n_jobs=2)
    pd.testing.assert_frame_equal(back, frame)


def test_the_store_evicts_the_least_recently_used_but_never_what_a_run_uses():
    store = SharedStore(limit_bytes=3 * MB)
    try:
        a, b, c, d = (np.full(MB // 8, float(i)) for i in range(4))  # 1 MB each
        running = set()  # a run still going uses a
        path_a, written = store.put(a, running)
        assert written
        path_b, _ = store.put(b, done := set())
        store.release(done)
        path_c, _ = store.put(c, done)
        store.release(done)
        store.put(d, done)  # over the limit: b, the oldest not in use, goes
        store.release(done)
        assert not os.path.exists(path_b)
        assert all(os.path.exists(path) for path in (path_a, path_c))
        assert store.put(b, done) == (path_b, True)  # back, written again
        store.release(done)
        assert os.path.exists(path_a)  # older, but pinned by the running run
        store.release(running)
        store.put(np.full(MB // 8, 9.0), done)
        assert not os.path.exists(path_a)  # released: now it may go
        assert store.nbytes <= 3 * MB
    finally:
        store.clear()
    assert not os.path.exists(os.path.dirname(path_a))


def test_a_version_the_array_replaced_goes_once_no_run_uses_it():
    store = SharedStore(limit_bytes=100 * MB)  # far from the limit
    try:
        array = np.zeros(MB // 8)
        source = (array.__array_interface__["data"][0], array.nbytes)
        running = set()  # a background run still reads the first version
        first, _ = store.put(array, running, source=source)
        array += 1
        second, written = store.put(array, done := set(), source=source)
        store.release(done)
        assert written and os.path.exists(first)  # in use: it stays
        store.release(running)
        assert not os.path.exists(first) and os.path.exists(second)
        array += 1
        third, _ = store.put(array, done, source=source)
        store.release(done)
        assert not os.path.exists(second) and os.path.exists(third)
        copy = array.copy()  # equal content, another array: one file for both
        assert store.put(copy, done, source=(copy.__array_interface__["data"][0],
                                             copy.nbytes))[0] == third
        array += 1
        store.put(array, done, source=source)
        store.release(done)
        assert os.path.exists(third)  # still the copy's version
    finally:
        store.clear()


def test_a_global_changed_between_runs_keeps_one_version_in_shared_memory():
    cell = notebook("""
        BIG = np.zeros(2_000_000)  # 16 MB
        def read_big(i):
            return float(BIG[i])
    """)
    big, store = cell["BIG"], shared_data.store()
    earlier = set(os.listdir(store.folder)) if store.folder else set()  # other tests'
    for version in [1000.25, 1001.25, 1002.25, 1003.25]:  # (content no other test shares)
        big[:] = version
        assert pmap(cell["read_big"], range(2), n_jobs=2) == [version, version]
        assert len(set(os.listdir(store.folder)) - earlier) == 1  # not one per version


SCRIPT = """
import os, signal, sys, numpy as np
from parmagic import pmap
from parmagic.data.shared_data import store
BIG = np.ones(2_000_000)
def work(i):
    if i == {crash_item}:
        os.kill(os.getpid(), signal.SIGKILL)
    return float(BIG.sum())
try:
    pmap(work, range(4), n_jobs=2, batch_size=1, progress=False)
except Exception as exc:
    print(type(exc).__name__)
print(pmap(work, [0], n_jobs=2, progress=False) == [2e6], store().folder, flush=True)
{ending}
"""


def run_script(tmp_path, crash_item=-1, ending=""):
    """Run SCRIPT in a fresh Python; returns (exit code, its output lines).
    Output goes to a file: workers of a killed process may hold a pipe open."""
    code = textwrap.dedent(SCRIPT.format(crash_item=crash_item, ending=ending))
    output = tmp_path / "out"
    with open(output, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=out,
                                   stderr=subprocess.STDOUT)
        returncode = process.wait(timeout=120)
    return returncode, output.read_text().splitlines()


@needs_posix("SIGKILL")
def test_nothing_is_left_after_exit_also_after_a_worker_was_killed(tmp_path):
    returncode, lines = run_script(tmp_path, crash_item=2)
    assert returncode == 0, lines
    crashed, last = lines[-2:]
    assert crashed == WorkerCrashError.__name__
    ok, folder = last.split()
    assert ok == "True" and folder.startswith(("/dev/shm/parmagic_", "/tmp/parmagic_"))
    assert not os.path.exists(folder)


@needs_linux("/dev/shm and SIGKILL")
def test_a_killed_notebook_process_leaves_nothing_either(tmp_path):
    returncode, lines = run_script(tmp_path, ending="os.kill(os.getpid(), signal.SIGKILL)")
    assert returncode == -signal.SIGKILL, lines
    folder = lines[-1].split()[-1]
    # loky's resource tracker removes it
    until(lambda: not os.path.exists(folder), f"{folder} to be removed", every=0.1)


@forces_fallback("/dev/shm")
def test_without_dev_shm_the_store_is_in_the_temp_folder(monkeypatch):
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != "/dev/shm" and access(path, mode))
    monkeypatch.setattr(shared_data, "_store", None)  # a new store, made now
    big = np.arange(2**18, dtype=np.float64)
    try:
        record = run(np.sum, [[big, big + 1]], n_jobs=2)
        assert record.results == [big.sum(), (big + 1).sum()]
        assert record.transfer.shared == 2 * big.nbytes
        folder = shared_data.store().folder
        assert folder.startswith(os.path.join(tempfile.gettempdir(), "parmagic_"))
    finally:
        shared_data.store().clear()
    assert not os.path.exists(folder)


def test_small_arrays_still_travel_inside_the_task():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = run(np.sum, [[np.ones(10)] * 4], n_jobs=2)
    assert record.results == [10.0] * 4
    assert record.transfer.shared == record.transfer.reused == 0


def test_the_size_limit_is_a_config_setting(shell):
    from parmagic.data.shared_data import store

    try:
        shell.run_line_magic("config", "ParMagic.shared_memory_mb = 1")
        assert store().limit_bytes == MB
    finally:
        shell.run_line_magic("config", "ParMagic.shared_memory_mb = 4096")
    assert store().limit_bytes == 4096 * MB


@needs_posix("os.kill(pid, 0) to tell whether a process exists")
def test_a_folder_left_by_a_dead_notebook_is_removed_by_the_next_store(tmp_path):
    from parmagic.data.shared_data import remove_orphans

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphan = tmp_path / f"parmagic_{gone.pid}_0123abcd"
    alive = tmp_path / f"parmagic_{os.getpid()}_4567ef01"
    unrelated = tmp_path / f"other_{gone.pid}_89abcdef"
    for folder in (orphan, alive, unrelated):
        folder.mkdir()
        (folder / "data").write_bytes(b"x")
    remove_orphans(str(tmp_path))
    assert not orphan.exists()
    assert alive.exists() and unrelated.exists()
