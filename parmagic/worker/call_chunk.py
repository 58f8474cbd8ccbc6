"""``CallChunk``: the calls of one chunk as the notebook reads them from the
input and a worker runs them."""


class CallChunk:
    """Consecutive calls read in one go, kept as their first index and their
    items: it reads as a sequence of ``(index, args)`` calls, but neither
    here nor in the worker does it make a tuple per item (for tiny items,
    making and pickling those was most of what a call cost). ``spread``:
    each item is the one argument (one iterable, no ``star``); otherwise
    each item is the argument tuple."""

    __slots__ = ("start", "items", "spread")

    def __init__(self, start, items, spread):
        self.start = start
        self.items = items
        self.spread = spread

    def indices(self):
        return range(self.start, self.start + len(self.items))

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return zip(self.indices(), zip(self.items) if self.spread else self.items)

    def __getitem__(self, position):  # rare: an error, a retry, the cache
        return list(self)[position]

    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other):
        return list(self) == list(other)

    def __repr__(self):
        return f"CallChunk({list(self)!r})"

    def __reduce__(self):
        return (CallChunk, (self.start, self.items, self.spread))
