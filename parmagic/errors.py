"""Exceptions parmagic raises for the user's mistakes and for failed items."""


class ParmagicInputError(ValueError):
    """Something the caller passed cannot be mapped (bad option, not callable,
    not iterable, ...).

    The engine raises it without knowing about IPython; the magics turn it into
    a one-line ``UsageError``.
    """


def short_repr(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, never raising."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object (repr failed: {exc!r})>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def describe_item_failure(index, item, finished, total):
    """The note added to an exception raised by the function for one item."""
    of_total = f" of {total}" if total is not None else ""
    return (
        f"parmagic: item {index} ({short_repr(item)}) failed; "
        f"{finished}{of_total} results had finished and are kept in the "
        "run record (_parmap.results in IPython)"
    )
