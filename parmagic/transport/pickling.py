"""Saying exactly what could not be sent to a worker process.

loky reports only "Could not pickle the task". When that happens, the
function and then each item are pickled on their own to find the culprit,
and the error names it: the global, closure variable, default or class
attribute the function uses (through its helpers and classes too), or the
item's index.
"""

import inspect
import types

import cloudpickle

from parmagic.common.dependencies import is_notebook_class, notebook_homes, walk
from parmagic.common.errors import NotPicklableError, short_repr
from parmagic.worker.setup import Setup

_ADVICE = (
    "use the threading backend (-b threading, backend='threading'), where "
    "nothing is pickled"
)


def function_error(func, func_label):
    """A ``NotPicklableError`` naming what in ``func`` cannot be pickled, or
    None when ``func`` pickles. ``func`` may be a ``worker_setup.Setup``: SETUP
    and the function are looked at in turn."""
    if isinstance(func, Setup):
        return (function_error(func.init, func.init_label)
                or function_error(func.func, func_label))
    try:
        cloudpickle.dumps(func)
        return None
    except Exception as exc:
        cause = exc
    for description, value in _parts(func):
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return NotPicklableError(
                f"{func_label} cannot be sent to the worker processes: it uses "
                f"{description}, a {type(value).__name__}, which cannot be pickled "
                f"({type(exc).__name__}: {exc}). Create it inside the function, "
                f"or {_ADVICE}."
            )
    return NotPicklableError(
        f"{func_label} cannot be sent to the worker processes "
        f"({type(cause).__name__}: {cause}); {_ADVICE}."
    )


def item_error(index, item, args):
    """A ``NotPicklableError`` for item ``index``, or None when it pickles."""
    try:
        cloudpickle.dumps(args)
        return None
    except Exception as exc:
        return NotPicklableError(
            f"item {index} ({short_repr(item)}), a {type(item).__name__}, cannot "
            f"be sent to a worker process ({type(exc).__name__}: {exc}). Pass "
            f"plain data (a generator can become a list first), or {_ADVICE}."
        )


_DESCRIPTIONS = {
    "global": "the global {!r}",
    "closure": "the closure variable {!r}",
    "default": "a default argument value",
    "kwdefault": "the default of {!r}",
    "attribute": "the class attribute {!r}",
}


def _parts(func):
    """``(description, value)`` for the data ``func`` carries to a worker,
    its own first, then its helpers' and its classes' (``walk`` order).
    Modules go by reference and notebook functions and classes are looked
    into instead, so the culprit named is the value inside them."""
    homes = notebook_homes(func)
    for item in walk(func):
        value = item.value
        if (item.kind not in _DESCRIPTIONS or inspect.ismodule(value)
                or _is_notebook_code(value, homes)):
            continue
        yield _DESCRIPTIONS[item.kind].format(item.name), value


def _is_notebook_code(value, homes):
    if isinstance(value, types.FunctionType):
        return value.__module__ in homes
    return is_notebook_class(value, homes)
