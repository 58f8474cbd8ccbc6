"""How the global-mutation warning reads: ``GlobalMutationWarning: ...``.

Python prints a warning after the file and line it points at; for a
notebook function that is the kernel's temporary file of the cell
(``/tmp/ipykernel_.../123.py:4: ...``), which means nothing to the reader.
The warning's own text names the function and the line, so parmagic prints
it without that prefix, wrapped to lines a notebook does not break
mid-word, by formatting it (``warnings.formatwarning``) while it is issued. Filters and ``catch_warnings`` treat it as any warning; a
``formatwarning`` someone else put in place is left alone.
"""

import contextlib
import textwrap
import warnings

_PYTHONS_OWN = warnings.formatwarning
WIDTH = 88  # columns of a printed warning


@contextlib.contextmanager
def readable(category):
    """Within the block, warnings of ``category`` print as
    ``Category: message``; others as usual."""
    if warnings.formatwarning is not _PYTHONS_OWN:
        yield
        return

    def format_warning(message, shown_category, filename, lineno, line=None):
        if issubclass(shown_category, category):  # wrapped: Jupyter breaks words
            return textwrap.fill(f"{shown_category.__name__}: {message}", WIDTH) + "\n"
        return _PYTHONS_OWN(message, shown_category, filename, lineno, line)

    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        if warnings.formatwarning is format_warning:
            warnings.formatwarning = _PYTHONS_OWN


def warn(text, category, filename, lineno):
    """Issue one of parmagic's warnings, read as ``Category: text``. No
    registry: it is shown on every run that has it, and filters still apply.
    ``filename`` and ``lineno`` are what a filter by module or line sees."""
    with readable(category):
        warnings.warn_explicit(text, category, filename, lineno)
