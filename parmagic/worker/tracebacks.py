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

import inspect
import linecache
import traceback
import types

from parmagic.common.dependencies import notebook_code

DYNAMIC = "<dynamic-code>"


def frames_of(exc):
    """Plain, picklable frames of ``exc``'s traceback, minus the first
    (the worker's own call site): (file, line number, function name, source
    line, first line of the function, its parameters as
    ``inspect.getargs`` gives them: names, ``*`` name, ``**`` name)."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    codes = [frame.f_code for frame, _ in traceback.walk_tb(tb)]
    return [
        (frame.filename, frame.lineno, frame.name, frame.line or "", code.co_firstlineno,
         _parameters(code))
        for frame, code in zip(traceback.extract_tb(tb), codes)
    ]


def _parameters(code):
    names, star, double_star = inspect.getargs(code)
    return tuple(names), star, double_star


def in_notebook(frames, func):
    """``frames`` with each ``<dynamic-code>`` file replaced by the cell file
    the code came from, and its source line read from there."""
    codes = notebook_code(func)
    placed = []
    for filename, lineno, name, line, first, parameters in frames:
        if filename == DYNAMIC:
            filename = _real_file(codes, name, lineno) or filename
            line = linecache.getline(filename, lineno).strip() or line
        placed.append((filename, lineno, name, line, first, parameters))
    return placed


def render(frames, exc):
    """Traceback text of placed ``frames`` (see :func:`in_notebook`)."""
    lines = ["Traceback (most recent call last):\n"]
    for filename, lineno, name, line, _first, _parameters in frames:
        lines.append(f'  File "{filename}", line {lineno}, in {name}\n')
        if line:
            lines.append(f"    {line}\n")
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)


def rebuild(frames):
    """A real traceback object through placed ``frames``, or None.

    Each frame comes from calling a function whose one statement, ``raise``,
    is compiled under the frame's file name at the line that failed, with
    the real function's name, first line and parameter names: IPython finds
    the function's lines from there and shows ``in inv(x)`` as for the
    function itself. (tblib starts the code at the failing line, and IPython
    then shows a kernel cell's lines from the wrong place.) The parameters'
    values stayed in the worker: in IPython's verbose mode they show as
    ``...``.
    """
    head = None
    for filename, lineno, name, _line, first, parameters in reversed(frames):
        tb = _raised_at(filename, lineno, name, first, parameters)
        tb.tb_next = head
        head = tb
    return head


class _Marker(Exception):
    pass


class _NotSent:
    """A parameter's value, which the worker did not send."""

    def __repr__(self):
        return "..."


def _raised_at(filename, lineno, name, first, parameters):
    lineno = lineno if lineno and lineno > 0 else 1  # a frame may not know its line
    first = first if 1 <= first <= lineno else lineno
    names, star, double_star = parameters
    # placeholders: a real name may not be one in source (a comprehension's ".0")
    declared = [f"p{i}" for i in range(len(names))]
    declared += [f"*p{len(names)}"] if star else []
    declared += [f"**p{len(names) + 1}"] if double_star else []
    body = " raise marker" if lineno == first else "\n" * (lineno - first) + " raise marker"
    source = "\n" * (first - 1) + f"def f({', '.join(declared)}):" + body
    module = compile(source, filename, "exec", dont_inherit=True)
    (code,) = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    real_names = [*names, *([star] if star else []), *([double_star] if double_star else [])]
    code = code.replace(co_name=name, co_qualname=name,
                        co_varnames=(*real_names, *code.co_varnames[len(real_names):]))
    function = types.FunctionType(code, {"marker": _Marker, "__name__": name})
    try:
        function(*[_NotSent()] * len(names))
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
