"""The iterables of a run: checked up front, then read lazily."""

import bisect
import itertools

from parmagic.common.errors import ParmagicInputError
from parmagic.worker.call_chunk import CallChunk


def check_inputs(func, iterables, star, func_label, iterable_labels):
    """Raise ``ParmagicInputError`` for a call that cannot be mapped."""
    if not callable(func):
        raise ParmagicInputError(
            f"{func_label} is not callable (it is {type(func).__name__}); "
            "the first argument must be the function to map"
        )
    if not iterables:
        raise ParmagicInputError("nothing to map over: give at least one iterable")
    for iterable, label in zip(iterables, iterable_labels):
        try:
            iter(iterable)
        except TypeError:
            raise ParmagicInputError(
                f"{label} is not iterable (it is {type(iterable).__name__})"
            ) from None
    if star and len(iterables) > 1:
        raise ParmagicInputError(
            "star=True takes one iterable of argument tuples; with several "
            "iterables each item is already passed as separate arguments"
        )


def default_labels(n_iterables):
    return ["func"] + [f"iterable {i + 1}" for i in range(n_iterables)]


class Inputs:
    """The zipped iterables, read lazily; remembers the items still in
    flight, chunk by chunk, so a failure can show the item's value."""

    def __init__(self, iterables, star):
        self.length = _common_length(iterables)
        self.n_read = 0
        self._in_flight = _InFlight()
        source = iterables[0] if len(iterables) == 1 else zip(*iterables)
        self._iterator = iter(source)
        self._spread = len(iterables) == 1 and not star  # each item is the one argument

    def has_items(self):
        """Whether there is at least one item (reads it ahead if needed)."""
        for item in self._iterator:
            self._iterator = itertools.chain([item], self._iterator)
            return True
        return False

    def calls(self):
        """The ``(index, args)`` calls, one at a time or, through the
        iterator's ``take(n)``, a ``CallChunk`` of up to ``n`` at once."""
        return _Calls(self.take)

    def take(self, n):
        """The next (up to) ``n`` calls as a ``CallChunk``, read in one go:
        for tiny items, per-item Python here is a large part of a run's
        cost."""
        items = list(itertools.islice(self._iterator, n))
        chunk = CallChunk(self.n_read, items, self._spread)
        self.n_read += len(items)
        if items:
            self._in_flight.add(chunk)
        return chunk

    def item(self, index):
        """The value of an item still in flight."""
        return self._in_flight.item(index)

    def call_again(self, index):
        """The ``(index, args)`` call of an item still in flight, to run it
        again (``--retries``)."""
        return next(iter(CallChunk(index, [self._in_flight.item(index)], self._spread)))

    def finished(self, indices, wanted):
        """Forget the finished ``indices``; return the items of those in
        ``wanted`` (the failed ones, whose values the errors show)."""
        items = {index: self._in_flight.item(index) for index in wanted}
        self._in_flight.done(indices)
        return items


class _InFlight:
    """Chunks read and not finished yet, by first index; a chunk goes once
    all its items have (usually in one step: a chunk comes back whole)."""

    def __init__(self):
        self._starts = []  # increasing, as chunks are read in order
        self._chunks = {}  # start -> [items, how many are not finished]

    def add(self, chunk):
        self._starts.append(chunk.start)
        self._chunks[chunk.start] = [chunk.items, len(chunk.items)]

    def item(self, index):
        start = self._start_of(index)
        return None if start is None else self._chunks[start][0][index - start]

    def done(self, indices):
        if not indices:
            return
        first = indices[0]
        entry = self._chunks.get(first)
        if entry is not None and entry[1] == len(entry[0]) == len(indices) \
                and indices[-1] == first + len(indices) - 1:
            self._forget(first)  # the usual case: a whole chunk, in order
            return
        for index in set(indices):
            start = self._start_of(index)
            if start is not None:
                entry = self._chunks[start]
                entry[1] -= 1
                if entry[1] == 0:
                    self._forget(start)

    def _start_of(self, index):
        position = bisect.bisect_right(self._starts, index) - 1
        if position < 0:
            return None
        start = self._starts[position]
        return start if index < start + len(self._chunks[start][0]) else None

    def _forget(self, start):
        del self._chunks[start]
        self._starts.pop(bisect.bisect_left(self._starts, start))


class _Calls:
    """An iterator of calls that can also hand out several at once."""

    def __init__(self, take):
        self.take = take

    def __iter__(self):
        return self

    def __next__(self):
        calls = self.take(1)
        if not calls:
            raise StopIteration
        return calls[0]


def _common_length(iterables):
    try:
        return min(len(iterable) for iterable in iterables)
    except TypeError:
        return None
