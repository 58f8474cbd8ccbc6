"""max_memory (``--max-memory``): a worker whose own memory passes the limit
is stopped, the items it ran fail with a MemoryLimitError naming them and
the limit, retries run them again, and later runs get fresh workers."""

import os
from pathlib import Path

import pytest
from test_retries import run_recorded

from parmagic import MemoryLimitError, ParmagicInputError, WorkerCrashError, pmap
from parmagic.engine.memory_limit import parse_size

MB = 1 << 20


def eat_at(x, which=2, folder=None):
    """Item ``which`` takes 1 GB a page at a time (only on its first attempt
    when ``folder`` is given: the attempt leaves a file there)."""
    if x == which and (folder is None or not (Path(folder) / "ate").exists()):
        if folder is not None:
            (Path(folder) / "ate").write_text(str(os.getpid()))
        blocks = []
        for _ in range(64):
            blocks.append(bytearray(b"x" * (16 * MB)))
    return x


def test_a_worker_past_the_limit_is_stopped_and_its_item_named():
    record, error = run_recorded(eat_at, range(4), n_jobs=2, max_memory="300MB",
                             batch_size=1)
    assert isinstance(error, MemoryLimitError) and isinstance(error, WorkerCrashError)
    assert 2 in error.items and 2 in record.errors
    text = str(error)
    assert "went past --max-memory 300 MB" in text and "item" in text
    assert "The notebook is fine" in text
    assert pmap(abs, [-1, -2, -3], n_jobs=2, max_memory="300MB") == [1, 2, 3]


def test_retries_run_the_item_again_on_a_fresh_worker(tmp_path):
    results = pmap(eat_at, range(4), [2] * 4, [str(tmp_path)] * 4, n_jobs=2,
                   max_memory="300MB", retries=1, retry_on="MemoryLimitError")
    assert results == [0, 1, 2, 3]
    assert (tmp_path / "ate").exists()  # the first attempt did go past the limit


def test_workers_under_the_limit_run_as_usual():
    assert pmap(eat_at, range(4), [99] * 4, n_jobs=2, max_memory="2GB") == [0, 1, 2, 3]


@pytest.mark.parametrize("size, expected", [
    ("500MB", 500 * MB), ("2G", 2 << 30), ("1.5 GiB", int(1.5 * (1 << 30))),
    ("64k", 64 << 10), (123456789, 123456789), (None, None)])
def test_sizes_are_read_in_units_of_1024(size, expected):
    assert parse_size(size) == expected


@pytest.mark.parametrize("size", ["lots", "-5MB", 0, "2 XB", True, [1]])
def test_a_size_that_is_not_one_is_an_input_error(size):
    with pytest.raises(ParmagicInputError, match="max_memory"):
        parse_size(size)


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_the_limit_on_a_backend_without_loky_workers_is_an_input_error(backend):
    with pytest.raises(ParmagicInputError, match="max_memory limits loky's worker"):
        pmap(abs, range(4), n_jobs=2, backend=backend, max_memory="1GB")
