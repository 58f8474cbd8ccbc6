"""The iterables of a run: checked up front, then read lazily."""

import collections
import itertools

from .errors import ParmagicInputError


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
    """The zipped iterables, read lazily; remembers items still in flight so
    a failure can show the item's value."""

    def __init__(self, iterables, star):
        self.length = _common_length(iterables)
        self.n_read = 0
        self._in_flight = {}
        source = iterables[0] if len(iterables) == 1 else zip(*iterables)
        self._iterator = iter(source)
        # zip(items) makes the 1-tuples func(*args) needs without a Python call
        self._as_args = zip if len(iterables) == 1 and not star else _as_given

    def has_items(self):
        """Whether there is at least one item (reads it ahead if needed)."""
        for item in self._iterator:
            self._iterator = itertools.chain([item], self._iterator)
            return True
        return False

    def calls(self):
        """The ``(index, args)`` calls, one at a time or, through the
        iterator's ``take(n)``, a list of up to ``n`` at once."""
        return _Calls(self.take)

    def take(self, n):
        """The next (up to) ``n`` calls as a list, read in one go: for tiny
        items, per-item Python here is a large part of a run's cost."""
        items = list(itertools.islice(self._iterator, n))
        indices = range(self.n_read, self.n_read + len(items))
        self.n_read += len(items)
        self._in_flight.update(zip(indices, items))
        return list(zip(indices, self._as_args(items)))

    def item(self, index):
        """The value of an item still in flight."""
        return self._in_flight.get(index)

    def call_again(self, index):
        """The ``(index, args)`` call of an item still in flight, to run it
        again (``--retries``)."""
        return index, next(iter(self._as_args([self._in_flight[index]])))

    def finished(self, indices, wanted):
        """Forget the finished ``indices``; return the items of those in
        ``wanted`` (the failed ones, whose values the errors show)."""
        in_flight = self._in_flight
        items = {index: in_flight.get(index) for index in wanted}
        collections.deque(map(in_flight.__delitem__, indices), maxlen=0)
        return items


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


def _as_given(items):
    return items  # the worker calls func(*item); a non-iterable item fails there


def _common_length(iterables):
    try:
        return min(len(iterable) for iterable in iterables)
    except TypeError:
        return None
