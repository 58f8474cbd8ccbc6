"""Worker tracebacks, rendered in the notebook with the user's source lines.

cloudpickle sends notebook functions by value and renames their file to
``<dynamic-code>``, so a worker cannot show the line that failed. The worker
sends plain frames (file, line number, function name, source line); here the
notebook side finds each ``<dynamic-code>`` frame's code among the notebook
functions and class methods the mapped function reaches
(``dependencies.notebook_code``) and reads the line from its real cell.
"""

import linecache
import traceback

from .dependencies import notebook_code

DYNAMIC = "<dynamic-code>"


def frames_of(exc):
    """Plain, picklable frames of ``exc``'s traceback, minus the first
    (the worker's own call site)."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    return [
        (frame.filename, frame.lineno, frame.name, frame.line or "")
        for frame in traceback.extract_tb(tb)
    ]


def render(frames, exc, func):
    """Traceback text for ``frames`` with source lines filled in."""
    codes = notebook_code(func)
    lines = ["Traceback (most recent call last):\n"]
    for filename, lineno, name, line in frames:
        if filename == DYNAMIC:
            filename = _real_file(codes, name, lineno) or filename
            line = linecache.getline(filename, lineno).strip() or line
        lines.append(f'  File "{filename}", line {lineno}, in {name}\n')
        if line:
            lines.append(f"    {line}\n")
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)


def _real_file(codes, name, lineno):
    for code in codes:
        if code.co_name == name and lineno in _line_numbers(code):
            return code.co_filename
    return None


def _line_numbers(code):
    return {line for _, _, line in code.co_lines() if line is not None}
