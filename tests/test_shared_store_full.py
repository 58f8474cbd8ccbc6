"""A full /dev/shm (Docker gives 64 MB) degrades: arrays that do not fit go
to the workers pickled, with one warning saying why and what to do, and
the results are what they would have been. Checked on a real small tmpfs
(as root on Linux) and, anywhere, with writes that fail."""

import errno
import os
import subprocess
import warnings

import numpy as np
import pytest
from waiting import until

from parmagic import run, shutdown_workers
from parmagic.data import shared_data
from parmagic.data.shared_data import SharedMemoryFullWarning, SharedStore

MB = 1 << 20


@pytest.fixture
def small_shm(tmp_path):
    """A 64 MB tmpfs, like Docker's default /dev/shm (unmounted after)."""
    folder = tmp_path / "shm"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        # workers keep their last run's files mapped (busy) until they have exited
        shutdown_workers()
        until(lambda: subprocess.run(["umount", str(folder)], capture_output=True,
                                     check=False).returncode == 0,
              "the workers to let go of the tmpfs", seconds=20, every=0.1)


@pytest.fixture
def store_in(monkeypatch):
    """Have runs use a store whose folder goes in the given root; a fresh
    one-time warning. Returns a function making it."""
    made = []

    def make(root):
        store = SharedStore(root=str(root))
        monkeypatch.setattr(shared_data, "_store", store)
        made.append(store)
        return store

    monkeypatch.setattr(shared_data, "_warned_full", False)
    yield make
    for store in made:
        store.clear()


def total(array, _):
    return float(array.sum())


def sums(arrays, n_jobs=2):
    """Each array's sum, computed in the workers, and the run's warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run(total, [arrays, range(len(arrays))], n_jobs=n_jobs)
    return record, [w for w in caught if issubclass(w.category, SharedMemoryFullWarning)]


def test_an_array_larger_than_a_full_tmpfs_goes_pickled_with_one_warning(small_shm, store_in):
    store = store_in(small_shm)
    small, large = np.full(2 * MB // 8, 1.0), np.full(80 * MB // 8, 2.0)
    record, shown = sums([small, large])
    assert record.results == [small.sum(), large.sum()]
    assert len(shown) == 1
    text = str(shown[0].message)
    assert "no room to share" in text and "--shm-size" in text and "MB free" in text
    shared, _, pickled, _ = record.transfer
    assert shared == small.nbytes  # the small one was shared
    assert pickled > large.nbytes  # the large one travelled in the task
    record, shown = sums([large, small])
    assert record.results == [large.sum(), small.sum()] and not shown  # said once
    store.clear()
    assert os.listdir(small_shm) == []


def test_files_no_worker_maps_make_room_for_a_new_array(small_shm, store_in):
    store = store_in(small_shm)
    first, second = np.full(30 * MB // 8, 1.0), np.full(30 * MB // 8, 2.0)
    assert sums([first])[0].transfer.shared == first.nbytes
    shutdown_workers()  # the worker that mapped the first array lets go of it
    # 34 MB free is too little for 30 MB and the 16 MB kept free: the first
    # run's file goes, and its pages with it
    record, shown = sums([second])
    assert not shown and record.transfer.shared == second.nbytes
    assert record.results == [second.sum()]
    assert store.nbytes == second.nbytes


def test_a_write_that_fails_falls_back_to_pickling(tmp_path, store_in, monkeypatch):
    store_in(tmp_path)

    def no_space(path, view):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shared_data, "_write", no_space)
    arrays = [np.full(2 * MB // 8, float(i)) for i in range(3)]
    record, shown = sums(arrays)
    assert record.results == [a.sum() for a in arrays] and record.errors == {}
    assert len(shown) == 1 and "No space left on device" in str(shown[0].message)
    assert record.transfer.shared == 0


def test_a_store_full_leaves_no_half_written_file(small_shm, monkeypatch):
    store = SharedStore(root=str(small_shm))
    # a free-space check that cannot tell (as if another process filled it meanwhile)
    monkeypatch.setattr(shared_data, "_free_bytes", lambda folder: None)
    try:
        with pytest.raises(shared_data.StoreFull, match="No space left"):
            store.put(np.full(80 * MB // 8, 3.0), set())
        (folder,) = os.listdir(small_shm)
        assert os.listdir(small_shm / folder) == [] and store.nbytes == 0
    finally:
        store.clear()
    assert os.listdir(small_shm) == []


def test_a_store_that_fails_otherwise_fails_the_items_with_its_error(tmp_path, store_in,
                                                                      monkeypatch):
    store = store_in(tmp_path)

    def broken(data, in_use, **_):
        raise ValueError("the store broke")

    monkeypatch.setattr(store, "put", broken)
    arrays = [np.full(2 * MB // 8, 1.0), np.full(2 * MB // 8, 2.0)]
    records = []
    with pytest.raises(ValueError, match="the store broke"):
        run(total, [arrays, range(2)], n_jobs=2, on_start=records.append)
    (record,) = records
    assert record.errors  # the run stops at the first
    assert all("the store broke" in str(error.exception) for error in record.errors.values())
