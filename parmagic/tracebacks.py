"""Worker tracebacks, brought back to the notebook as real tracebacks.

cloudpickle sends notebook functions by value and renames their file to
``<dynamic-code>``, so a worker cannot show the line that failed. The worker
sends plain frames (file, line number, function name, source line); here the
notebook side finds each ``<dynamic-code>`` frame's code among the notebook
functions and class methods the mapped function reaches
(``dependencies.notebook_code``), takes its real cell file, and rebuilds a
traceback object that the failing item's exception carries: the
user's lines then appear wherever the exception is shown, as if the function
had failed in the notebook itself.
"""

import linecache
import traceback

from .dependencies import notebook_code

DYNAMIC = "<dynamic-code>"


def frames_of(exc):
    """Plain, picklable frames of ``exc``'s traceback, minus the first
    (the worker's own call site): (file, line number, function name, source
    line, first line of the function)."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    firsts = [frame.f_code.co_firstlineno for frame, _ in traceback.walk_tb(tb)]
    return [
        (frame.filename, frame.lineno, frame.name, frame.line or "", first)
        for frame, first in zip(traceback.extract_tb(tb), firsts)
    ]


def in_notebook(frames, func):
    """``frames`` with each ``<dynamic-code>`` file replaced by the cell file
    the code came from, and its source line read from there."""
    codes = notebook_code(func)
    placed = []
    for filename, lineno, name, line, first in frames:
        if filename == DYNAMIC:
            filename = _real_file(codes, name, lineno) or filename
            line = linecache.getline(filename, lineno).strip() or line
        placed.append((filename, lineno, name, line, first))
    return placed


def render(frames, exc):
    """Traceback text of placed ``frames`` (see :func:`in_notebook`)."""
    lines = ["Traceback (most recent call last):\n"]
    for filename, lineno, name, line, _first in frames:
        lines.append(f'  File "{filename}", line {lineno}, in {name}\n')
        if line:
            lines.append(f"    {line}\n")
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)


def rebuild(frames):
    """A real traceback object through placed ``frames``, or None.

    Each frame comes from running a one-line ``raise`` compiled under the
    frame's file name, starting at its function's first line and padded
    down to the line that failed, and renamed after the function: IPython
    finds the function's lines from there. (tblib starts the code at the
    failing line, and IPython then shows a kernel cell's lines from the
    wrong place.)
    """
    head = None
    for filename, lineno, name, _line, first in reversed(frames):
        tb = _raised_at(filename, lineno, name, first)
        tb.tb_next = head
        head = tb
    return head


class _Marker(Exception):
    pass


def _raised_at(filename, lineno, name, first):
    lineno = lineno if lineno and lineno > 0 else 1  # a frame may not know its line
    first = first if 1 <= first <= lineno else lineno
    source = "\n" * (lineno - first) + "raise marker"
    code = compile(source, filename, "exec", dont_inherit=True)
    code = code.replace(co_name=name, co_qualname=name, co_firstlineno=first)
    try:
        exec(code, {"marker": _Marker, "__name__": name})  # noqa: S102 - our own one line
    except _Marker as raised:
        return raised.__traceback__.tb_next  # the frame of `code`, not of this one
    raise AssertionError("unreachable")


def _real_file(codes, name, lineno):
    for code in codes:
        if code.co_name == name and lineno in _line_numbers(code):
            return code.co_filename
    return None


def _line_numbers(code):
    return {line for _, _, line in code.co_lines() if line is not None}
