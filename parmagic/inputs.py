"""The iterables of a run: checked up front, then read lazily."""

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
        self._as_args = _star_args if star or len(iterables) > 1 else _single_arg
        self._peeked = []

    def has_items(self):
        """Whether there is at least one item (reads it ahead if needed)."""
        for item in self._iterator:
            self._peeked.append(item)
            return True
        return bool(self._peeked)

    def calls(self):
        for item in itertools.chain(self._peeked, self._iterator):
            index = self.n_read
            self.n_read += 1
            self._in_flight[index] = item
            yield index, self._as_args(item)

    def finished(self, indices, wanted):
        """Forget the finished ``indices``; return the items of those in
        ``wanted`` (the failed ones, whose values the errors show)."""
        in_flight = self._in_flight
        items = {index: in_flight.get(index) for index in wanted}
        for index in indices:
            del in_flight[index]
        return items


def _star_args(item):
    return item  # the worker calls func(*item); a non-iterable item fails there


def _single_arg(item):
    return (item,)


def _common_length(iterables):
    try:
        return min(len(iterable) for iterable in iterables)
    except TypeError:
        return None
