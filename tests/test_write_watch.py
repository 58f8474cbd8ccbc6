"""write_watch: an array's digest is reused only while the kernel says no
page of it was written."""

import mmap

import numpy as np
import pytest
from platforms import forces_fallback, needs_linux

from parmagic.data import write_watch
from parmagic.data.shared_data import _digest

MB = 1 << 20
PAGE = mmap.PAGESIZE

pytestmark = needs_linux("userfaultfd write protection and PAGEMAP_SCAN (Linux 6.7+)")


class Hashing:
    """``_digest``, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, view):
        self.calls += 1
        return _digest(view)


@pytest.fixture
def watch():
    # the process's own: a range can be registered with one userfaultfd only
    current = write_watch.watch()
    if current._faults is None:
        pytest.skip("this system has no userfaultfd with asynchronous write protection")
    current.forget()
    yield current
    current.forget()


def digest(watch, array, hashing):
    return watch.digest(array, memoryview(array).cast("B"), hashing)


def watched(watch, array, hashing=None):
    """``array`` as watch sees it after the runs that make it watch."""
    hashing = hashing or Hashing()
    for _ in range(3):  # hashed, agreed once, then protected before the third hash
        digest(watch, array, hashing)
    assert watch.watching(array)
    return array


def test_an_unchanged_array_is_hashed_until_two_runs_agree_then_watched(watch):
    array = np.random.rand(8 * MB // 8)
    hashing = Hashing()
    digests = [digest(watch, array, hashing) for _ in range(6)]
    assert digests == [_digest(memoryview(array).cast("B"))] * 6
    assert hashing.calls == 3


@pytest.mark.parametrize("where", [0, 4 * MB // 8 + 3, 8 * MB // 8 - 1],
                         ids=["first", "middle", "last"])
def test_a_write_to_one_element_anywhere_is_seen(watch, where):
    array = watched(watch, np.zeros(8 * MB // 8))
    before = digest(watch, array, Hashing())
    array[where] = 1.0
    after = digest(watch, array, Hashing())
    assert after != before and after == _digest(memoryview(array).cast("B"))
    assert not watch.watching(array)  # no more faults


@pytest.mark.parametrize("where", [0, -1], ids=["first-page", "last-page"])
def test_bytes_on_a_page_shared_with_neighbours_are_compared(watch, where):
    memory = np.zeros(8 * MB + 2 * PAGE, dtype=np.uint8)
    array = memory[PAGE + 100: -PAGE - 100]  # starts and ends inside a page
    hashing = Hashing()
    before = digest(watch, watched(watch, array, hashing), hashing)
    memory[PAGE + 50] = memory[-PAGE - 50] = 1  # the neighbours write
    assert digest(watch, array, hashing) == before
    assert hashing.calls == 3  # still watched
    array[where] = 1
    assert digest(watch, array, hashing) == _digest(memoryview(array).cast("B")) != before


def test_a_write_by_the_kernel_is_seen_and_works(watch, tmp_path):
    # readinto copies in the kernel: the protected page must take the write
    # (not a SIGBUS) and record it
    array = watched(watch, np.zeros(8 * MB, dtype=np.uint8))
    before = digest(watch, array, Hashing())
    path = tmp_path / "data"
    path.write_bytes(b"\x07" * (2 * PAGE))
    with open(path, "rb") as file:
        assert file.readinto(memoryview(array)[10 * PAGE: 12 * PAGE]) == 2 * PAGE
    assert array[10 * PAGE] == 7
    assert digest(watch, array, Hashing()) == _digest(memoryview(array).cast("B")) != before


def test_an_array_changed_before_every_run_is_never_protected(watch):
    array = np.zeros(8 * MB // 8)
    for step in range(5):
        array += 1  # each run meets a new version
        assert digest(watch, array, Hashing()) == _digest(memoryview(array).cast("B"))
        assert not watch.watching(array)


def test_memory_given_back_to_the_system_is_seen(watch):
    # such a page reads as zeros afterwards, without any write
    memory = mmap.mmap(-1, 8 * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    array = np.frombuffer(memory, dtype=np.uint8)
    array[:] = 7
    before = digest(watch, watched(watch, array), Hashing())
    memory.madvise(mmap.MADV_DONTNEED, 5 * PAGE, PAGE)
    assert digest(watch, array, Hashing()) != before  # (before reading the page)
    assert array[5 * PAGE] == 0
    del array
    memory.close()


def test_a_file_mapping_changed_through_another_mapping_is_seen(watch, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(bytes(8 * MB))
    with open(path, "r+b") as file:
        ours = mmap.mmap(file.fileno(), 0)
        theirs = mmap.mmap(file.fileno(), 0)
    array = np.frombuffer(ours, dtype=np.uint8)
    hashing = Hashing()
    for _ in range(4):
        digest(watch, array, hashing)
        assert not watch.watching(array)
    theirs[12345] = 1  # never a write through our mapping
    assert digest(watch, array, hashing) == _digest(memoryview(array).cast("B"))
    assert array[12345] == 1
    del array
    ours.close()
    theirs.close()


def test_overlapping_arrays_are_not_both_watched(watch):
    whole = watched(watch, np.zeros(16 * MB // 8))
    half = whole[: 8 * MB // 8 + 100]  # shares a page with the rest, too
    for _ in range(4):
        digest(watch, half, Hashing())
        assert not watch.watching(half)
    before = digest(watch, whole, Hashing())
    whole[3] = 1.0
    assert digest(watch, whole, Hashing()) != before


def test_small_arrays_are_hashed_every_time(watch):
    array = np.zeros(write_watch.MIN_WATCHED_BYTES // 8 - 1)
    hashing = Hashing()
    for _ in range(5):
        digest(watch, array, hashing)
    assert hashing.calls == 5


def test_an_array_collected_is_released_and_a_new_one_at_its_address_hashed(watch):
    array = watched(watch, np.ones(8 * MB // 8))
    key = (array.ctypes.data, array.nbytes)
    del array
    again = np.zeros(8 * MB // 8)  # perhaps at the same address
    hashing = Hashing()
    assert digest(watch, again, hashing) == _digest(memoryview(again).cast("B"))
    assert hashing.calls == 1
    assert key not in watch._known or not watch._known[key].pages


@forces_fallback("userfaultfd")
def test_without_userfaultfd_every_call_hashes(monkeypatch):
    monkeypatch.setattr(write_watch, "_open", lambda: None)
    watch = write_watch.WriteWatch()
    array = np.zeros(8 * MB // 8)
    hashing = Hashing()
    for _ in range(5):
        assert digest(watch, array, hashing) == _digest(memoryview(array).cast("B"))
    assert hashing.calls == 5


def test_a_forked_child_has_a_watch_of_its_own():
    # (the parent's userfaultfd would register ranges of the parent's memory)
    import os
    import select
    import signal

    parent = write_watch.watch()
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.write(writing, b"1" if write_watch.watch() is not parent else b"0")
        finally:
            os._exit(0)
    os.close(writing)
    ready = []
    try:
        ready, _, _ = select.select([reading], [], [], 60)
        answer = os.read(reading, 1) if ready else b"no answer"
    finally:
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(reading)
    assert answer == b"1"
