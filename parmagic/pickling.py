"""Saying exactly what could not be sent to a worker process.

loky reports only "Could not pickle the task". When that happens, the
function and then each item are pickled on their own to find the culprit,
and the error names it: the global or closure variable the function uses,
or the item's index.
"""

import inspect

import cloudpickle

from .errors import NotPicklableError, short_repr
from .mutation import code_names

_ADVICE = (
    "use the threading backend (-b threading, backend='threading'), where "
    "nothing is pickled"
)


def function_error(func, func_label):
    """A ``NotPicklableError`` naming what in ``func`` cannot be pickled, or
    None when ``func`` pickles."""
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


def _parts(func):
    """``(description, value)`` for what ``func`` carries to a worker:
    defaults, closure variables and the globals its code names."""
    for value in getattr(func, "__defaults__", None) or ():
        yield "a default argument value", value
    for name, value in (getattr(func, "__kwdefaults__", None) or {}).items():
        yield f"the default of {name!r}", value
    code = getattr(func, "__code__", None)
    if code is None:
        return
    cells = zip(code.co_freevars, getattr(func, "__closure__", None) or ())
    for name, cell in cells:
        try:
            yield f"the closure variable {name!r}", cell.cell_contents
        except ValueError:  # empty cell
            continue
    namespace = getattr(func, "__globals__", {})
    for name in sorted(code_names(code)):
        value = namespace.get(name)
        if name in namespace and not inspect.ismodule(value):
            yield f"the global {name!r}", value
