"""Exceptions parmagic raises for the user's mistakes and for failed items."""

import pickle
import re


class ParmagicInputError(ValueError):
    """Something the caller passed cannot be mapped (bad option, not callable,
    not iterable, ...).

    The engine raises it without knowing about IPython; the magics turn it into
    a one-line ``UsageError``.
    """


class ItemTimeoutError(TimeoutError):
    """An item ran longer than the run's per-item time limit (``--timeout``)."""


class WorkerCrashError(RuntimeError):
    """A worker process died (segfault, ``os._exit``, killed for memory)
    while running items; ``items`` are the indices it may have been running."""

    def __init__(self, message, items=()):
        super().__init__(message)
        self.items = tuple(items)

    def __reduce__(self):
        return (type(self), (str(self), self.items))


class MemoryLimitError(WorkerCrashError):
    """A worker went past ``max_memory`` (``--max-memory``) and was stopped;
    ``items`` are the indices it may have been running."""


class ItemExitError(RuntimeError):
    """An item called ``sys.exit()``; parmagic reports it as a failed item
    rather than ending a worker (or the kernel)."""


class NotPicklableError(pickle.PicklingError):
    """The function, an item or a result could not be sent between the
    notebook and a worker process."""


class UnpicklableExceptionError(RuntimeError):
    """Stands in for an exception an item raised that could not be sent back
    from its worker process (it holds a lock, say, or its ``__init__`` cannot
    be called again when it is unpickled). Rare: exceptions travel with
    cloudpickle, notebook classes included.

    ``type_name`` is the original's ``module.QualifiedName``; the message
    starts with it and the original message, and the traceback is the
    original's.
    """

    def __init__(self, type_name, message, reason):
        super().__init__(
            f"{type_name}: {message} [this {type_name.rpartition('.')[2]} could not "
            f"be sent back from the worker ({reason}), so this error stands in for it]"
        )
        self.type_name = type_name
        self._args = (type_name, message, reason)

    def __reduce__(self):
        return (type(self), self._args)


def short_repr(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, never raising."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object (repr failed: {exc!r})>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def describe_item_failure(index, item_repr, finished=None, total=None, attempts=1):
    """The note added to the exception of a failed item: which item (unless
    ``index`` is None), after how many attempts (``--retries``), and how many
    results are kept when the run stopped."""
    after = f" after {attempts} attempts" if attempts > 1 else ""
    said = [f"failed{after}"] if index is None and after else []
    if index is not None:
        said = [f"item {index} ({item_repr}) failed{after}"]
    if finished is not None:
        of_total = f" of {total}" if total is not None else ""
        said.append(
            f"{finished}{of_total} results had finished and are kept in the "
            "run record (_parmap.results in IPython)"
        )
    return "parmagic: " + "; ".join(said)


def describe_items(indices, limit=10):
    """"item 3" or "items 2, 3, 5 and 4 more", for messages."""
    shown = ", ".join(map(str, indices[:limit]))
    if len(indices) > limit:
        shown += f" and {len(indices) - limit} more"
    return f"item{'s' if len(indices) > 1 else ''} {shown}"


_SIGNAL_MEANINGS = {
    "SIGSEGV": "a segmentation fault",
    "SIGBUS": "a bus error",
    "SIGABRT": "an abort",
    "SIGKILL": "killed, often by the system for using too much memory",
}


def crash_message(loky_text, items, out_of_memory=False):
    """What to tell the user when loky reports a dead worker (``loky_text``)
    while ``items`` were in flight; ``out_of_memory``: the system killed a
    process for memory meanwhile (``out_of_memory``)."""
    match = re.search(r"exit codes of the workers are \{(.*?)\}", loky_text)
    codes = match.group(1) if match else "unknown exit code"
    if out_of_memory and "SIGKILL" in codes:
        return (
            f"the system ran out of memory and killed a worker process ({codes}) "
            f"while it ran {describe_items(items)}"
            f"{'' if len(items) == 1 else '; one of them needed more than was free'}. "
            "The notebook is fine (workers are killed first) and the next run "
            "starts fresh workers. To fit: use fewer workers (-n), smaller items, "
            "or free memory in the notebook."
        )
    meanings = [text for name, text in _SIGNAL_MEANINGS.items() if name in codes]
    cause = f"{codes}: {', '.join(meanings)}" if meanings else codes
    return (
        f"a worker process died ({cause}) while running {describe_items(items)}"
        f"{'' if len(items) == 1 else '; one of them made it crash'}. "
        "The notebook is fine and the next run starts fresh workers."
    )


class RunCancelled(KeyboardInterrupt):
    """Raised inside a background run when its handle is cancelled (a
    ``KeyboardInterrupt``, so the run stops exactly as on Ctrl-C: busy
    workers are stopped and finished results are kept)."""
