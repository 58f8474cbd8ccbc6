"""How IPython shows a failed run: like the same failure in a serial loop.

The exception a user sees passed through IPython's magic machinery,
parmagic's collector and, for background runs, a thread, before reaching the
cell; its worker part is a traceback rebuilt from the worker's frames
(``tracebacks.rebuild``). IPython asks an exception for its own rendering
through ``_render_traceback_`` (the hook ipyparallel uses for remote
errors), so each exception parmagic raises gets one that renders the same
traceback without the frames that are not the user's: the cell's line, the
function's lines in the worker, the exception and parmagic's note.
``%xmode`` and the colour scheme apply as usual.

IPython prints exception groups with the standard ``traceback`` module and
never asks them; ``install``/``uninstall`` put a handler for groups in
place (``InteractiveShell.set_custom_exc``) that asks them too, and leaves
every other group to IPython.
"""

import importlib.util
import os
import re
import traceback
import types


def _location(name):
    """Where module ``name`` lives (its folder, for a package), without
    importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    if spec.submodule_search_locations:
        return os.path.dirname(spec.origin) + os.sep
    return spec.origin


# The machinery between a cell and the user's function, never the user's own
# code: packages (folders) and standard modules (files).
_MACHINERY = (
    *filter(None, map(_location, (
        "parmagic", "joblib", "IPython", "ipykernel", "concurrent", "multiprocessing",
        "threading", "queue", "selectors", "socket", "contextlib", "distributed", "ray",
    ))),
    "<decorator-gen-",
)

# A line of column markers under a source line, in a group's frame too.
_COLUMN_MARKS = re.compile(r"^[ |]*[\^~]+ *$")


def show_cleanly(exc, worker_tb=None):
    """Give ``exc`` a rendering without machinery frames, unless it has one.

    ``worker_tb`` is the rebuilt worker part of ``exc.__traceback__``: frames
    from there on are the user's and kept, whatever their file.
    """
    if getattr(exc, "_render_traceback_", None) is None:
        try:
            exc._render_traceback_ = _Rendering(exc, worker_tb)
        except AttributeError:  # an exception class without a __dict__
            pass
    return exc


class _Rendering:
    """``exc._render_traceback_``: IPython's structured traceback (a list of
    strings) of ``exc`` with its machinery frames left out."""

    def __init__(self, exc, worker_tb):
        self.exc = exc
        self.worker_tb = worker_tb

    def __reduce__(self):
        # the exception stays picklable: tracebacks are not, so a copy
        # renders what its own traceback has
        return (_Rendering, (self.exc, None))

    def __call__(self):
        from IPython import get_ipython

        exc, shell = self.exc, get_ipython()
        tb = user_frames(exc.__traceback__, self.worker_tb)
        if isinstance(exc, BaseExceptionGroup) or shell is None:
            return _standard_lines(exc, tb)
        return shell.InteractiveTB.structured_traceback(type(exc), exc, tb, tb_offset=0)


def user_frames(tb, worker_tb=None):
    """A new traceback through the frames of ``tb`` that are the user's:
    all from ``worker_tb`` on; before it, those outside the machinery and
    not hidden with ``__tracebackhide__``."""
    kept = []
    while tb is not None:
        if tb is worker_tb:
            while tb is not None:
                kept.append(tb)
                tb = tb.tb_next
            break
        if not _is_machinery(tb.tb_frame):
            kept.append(tb)
        tb = tb.tb_next
    head = None
    for entry in reversed(kept):
        head = types.TracebackType(head, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return head


def _is_machinery(frame):
    if frame.f_locals.get("__tracebackhide__"):
        return True
    return frame.f_code.co_filename.startswith(_MACHINERY)


def _standard_lines(exc, tb):
    """Python's own rendering, groups included (ultratb has none for them).
    Lines of column markers (``^^^^``) are left out: a rebuilt worker frame
    knows its line but not the columns, so its markers would point anywhere."""
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return [line for line in text.rstrip("\n").split("\n") if not _COLUMN_MARKS.match(line)]


def _show_group(shell, etype, value, tb, tb_offset=None):
    """``set_custom_exc`` handler for exception groups."""
    if getattr(value, "_render_traceback_", None) is not None:
        shell._showtraceback(etype, value, value._render_traceback_())
    else:  # not parmagic's: as IPython shows it without this handler
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def install(shell):
    """Show parmagic's exception groups cleanly in ``shell``, unless another
    handler for exceptions is in place there."""
    if not shell.custom_exceptions:
        shell.set_custom_exc((BaseExceptionGroup,), _show_group)


def uninstall(shell):
    if shell.custom_exceptions == (BaseExceptionGroup,):
        shell.set_custom_exc((), None)
