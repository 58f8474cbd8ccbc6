"""``NOT_COMPUTED``: what a run's results hold for an item that did not
finish (it failed, or the run stopped first)."""


class _NotComputed:
    """Placeholder in ``results`` for an item that never finished."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "<not computed>"

    def __reduce__(self):
        return (_NotComputed, ())


NOT_COMPUTED = _NotComputed()
