"""chunked.ChunkSizer: how many items a chunk takes."""

import pytest

from parmagic.engine.chunked import ChunkSizer


@pytest.mark.parametrize("batch_size", ["auto", 10])
def test_no_chunk_is_larger_than_max_chunk(batch_size):
    sizer = ChunkSizer(batch_size, 10_000, 2, max_chunk=3)
    for _ in range(10):
        sizer.observe(sizer.size, 1e-6)  # tiny items: "auto" would grow
        assert 1 <= sizer.size <= 3
    assert sizer.size == 3


def test_a_few_tiny_items_are_one_chunk_only_if_it_fits_max_chunk():
    assert ChunkSizer("auto", 4, 2, tiny_items=True).whole
    assert ChunkSizer("auto", 4, 2, tiny_items=True, max_chunk=4).whole
    capped = ChunkSizer("auto", 4, 2, tiny_items=True, max_chunk=3)
    assert not capped.whole and capped.size == 3
