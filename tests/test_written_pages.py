"""written_pages: whether this process wrote into a private file mapping,
asked of the kernel (PAGEMAP_SCAN, Linux 6.7+) or read from the pagemap
entries on older kernels."""

import mmap

import pytest
from platforms import needs_linux

from parmagic.data import written_pages

PAGE = mmap.PAGESIZE


@pytest.fixture(params=["scan", "entries"])
def mapping(tmp_path, request, monkeypatch):
    if request.param == "entries":  # as on a kernel without PAGEMAP_SCAN
        monkeypatch.setattr(written_pages, "any_page", lambda *args, **kwargs: None)
    elif written_pages.any_page(0, 0) is None:
        pytest.skip("this kernel has no PAGEMAP_SCAN")
    path = tmp_path / "data"
    path.write_bytes(bytes(range(256)) * (64 * PAGE // 256))  # 64 pages
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    yield mapped
    mapped.close()


@needs_linux("/proc/self/pagemap")
def test_a_mapping_only_read_is_unwritten(mapping):
    assert written_pages.unwritten(mapping)  # nothing touched yet
    assert sum(mapping[::PAGE]) >= 0  # every page read
    assert written_pages.unwritten(mapping)


@needs_linux("/proc/self/pagemap")
@pytest.mark.parametrize("page", [0, 37, 63])
def test_one_written_byte_anywhere_is_seen(mapping, page):
    mapping[page * PAGE + 5] = 255
    assert not written_pages.unwritten(mapping)
    assert mapping[page * PAGE + 5] == 255  # the write stays in this process


def test_without_pagemap_nothing_counts_as_unwritten(mapping, monkeypatch):
    monkeypatch.setattr(written_pages, "_pagemap_fd", lambda: None)
    assert not written_pages.unwritten(mapping)
