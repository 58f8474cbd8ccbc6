"""Finding a mapped function's changes to notebook globals.

In a worker process such a change is made to the worker's copy and silently
lost. Two layers find it:

* ``static_findings`` reads the function's source before the run: assigning a
  ``global``, item/attribute assignment or ``del`` on a global, augmented
  assignment, ``setattr``/``delattr`` on a global, and mutating method calls
  (``A.append(...)``, ``inplace=True``, ``out=A``).
* ``worker.global_watch.GlobalWatch`` runs in the workers: it fingerprints
  the globals read by the function, by the notebook functions it calls and by the methods of the
  notebook classes it uses, before and after the work, and names those that
  changed. It catches changes made through helpers and methods
  (``registry.register(x)``) that the static pass cannot see.
"""

import ast
import functools
import inspect
import textwrap
import types

from parmagic.common.not_computed import NOT_COMPUTED
from parmagic.display import warning_display

MUTATING_METHODS = frozenset(
    "append extend insert pop remove clear update setdefault popitem add discard "
    "sort reverse __setitem__ __delitem__ difference_update intersection_update "
    "symmetric_difference_update fill resize put itemset setflags "
    "appendleft extendleft popleft rotate".split()
)


class Finding:
    """One change to a global: its name, the line number and the line."""

    def __init__(self, name, lineno=None, line=""):
        self.name = name
        self.lineno = lineno
        self.line = line

    def __repr__(self):
        return f"Finding({self.name!r}, {self.lineno}, {self.line!r})"


# -- static pass --------------------------------------------------------------
def static_findings(func, fallback_source=None):
    """Changes to globals visible in ``func``'s source; ``fallback_source`` is
    read when ``inspect`` cannot find it (a lambda typed in a magic line)."""
    node, lines, first_line = _function_node(func, fallback_source)
    if node is None:
        return []
    global_values = getattr(func, "__globals__", {})
    findings = []
    for name, lineno, if_global in _candidates(node):
        if if_global and not _is_global_value(name, global_values):
            continue
        text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        findings.append(Finding(name, lineno + first_line - 1, text))
    return findings


def _function_node(func, fallback_source):
    # Cached by code object (which keeps no globals alive): the source that
    # compiled to it does not change, and a warm call should not read and
    # parse it again.
    code = getattr(func, "__code__", None)
    if code is None:
        return _parse_function(func, fallback_source)
    key = (code, fallback_source)
    if key not in _PARSED:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = _parse_function(func, fallback_source)
    return _PARSED[key]


_PARSED = {}
_PARSED_MAX = 256


def _parse_function(func, fallback_source):
    first_line = 1
    try:
        lines, first_line = inspect.getsourcelines(func)
        source = "".join(lines)
    except (OSError, TypeError):
        if fallback_source is None:
            return None, [], 1
        source = fallback_source
    source = textwrap.dedent(source)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        try:  # a lambda cut out of a longer line: retry as an expression
            tree = ast.parse("(" + source.strip().rstrip(",") + ")")
        except SyntaxError:
            return None, [], 1
    name = getattr(func, "__name__", "")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node, source.splitlines(), first_line
        if isinstance(node, ast.Lambda) and name == "<lambda>":
            return node, source.splitlines(), first_line
    return None, [], 1


@functools.lru_cache(maxsize=_PARSED_MAX)  # nodes are kept in _PARSED: walk each once
def _local_names(function_node):
    """Names bound inside the function (parameters, assignments, loop and
    comprehension variables, imports, nested defs), minus ``global`` ones."""
    declared_global, bound = set(), set()
    for node in ast.walk(function_node):
        if isinstance(node, ast.Global):
            declared_global.update(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return _Scope(frozenset(bound - declared_global), frozenset(declared_global))


@functools.lru_cache(maxsize=_PARSED_MAX)  # nodes are kept in _PARSED: walk each once
def _candidates(function_node):
    """(name, line, if_global) of every change the function's code makes
    to a name it does not bind: a finding always (a ``global`` name
    assigned), or only if the name is a global that is not a module, which
    is looked up at each run (``if_global``)."""
    visitor = _MutationVisitor(_local_names(function_node))
    body = function_node.body if isinstance(function_node.body, list) else [function_node.body]
    for statement in body:
        visitor.visit(statement)
    return tuple(visitor.found)


def _is_global_value(name, global_values):
    return name in global_values and not isinstance(global_values[name], types.ModuleType)


class _Scope:
    def __init__(self, local, declared_global):
        self.local = local
        self.declared_global = declared_global


class _MutationVisitor(ast.NodeVisitor):
    def __init__(self, scope):
        self.scope = scope
        self.found = []  # (name, line, whether only if it names a global)

    def _change(self, name, lineno):
        """A change to ``name``, unless the function binds it itself."""
        if name in self.scope.declared_global:
            self.found.append((name, lineno, False))
        elif name not in self.scope.local:
            self.found.append((name, lineno, True))

    def _target(self, target, lineno):
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element, lineno)
            return
        if isinstance(target, ast.Starred):
            target = target.value
        if isinstance(target, ast.Name):
            if target.id in self.scope.declared_global:
                self.found.append((target.id, lineno, False))
            return
        base = _base_name(target)
        if base is not None:
            self._change(base, lineno)

    def visit_Assign(self, node):
        for target in node.targets:
            self._target(target, node.lineno)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_For(self, node):
        self._target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self._target(target, node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node):
        function = node.func
        if (isinstance(function, ast.Name) and function.id in ("setattr", "delattr")
                and function.id not in self.scope.local and node.args):
            base = _base_name(node.args[0])
            if base:
                self._change(base, node.lineno)
        if isinstance(function, ast.Attribute):
            base = _base_name(function.value)
            inplace = any(
                k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            if base and (function.attr in MUTATING_METHODS or inplace):
                self._change(base, node.lineno)
        for keyword in node.keywords:
            if keyword.arg == "out":
                base = _base_name(keyword.value)
                if base:
                    self._change(base, node.lineno)
        self.generic_visit(node)


def _base_name(node):
    """``A`` for ``A``, ``A[i]``, ``A.x``, ``A[i].x[j]``; None otherwise."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


# -- the warning --------------------------------------------------------------
class GlobalMutationWarning(UserWarning):
    """A mapped function changes notebook globals: with processes the change
    is lost, with threads it is shared without synchronisation."""


class MutationCheck:
    """Both passes for one run, and its one warning.

    ``isolation`` is "processes", "threads", or None when the function runs
    in the notebook's own process and thread (nothing to warn about).
    """

    def __init__(self, func, isolation, source=None, enabled=True):
        self.func = func
        self.isolation = isolation
        self.active = bool(enabled and isolation)
        self.findings = static_findings(func, source) if self.active else []
        self.changed = set()

    def observe(self, outcome):
        self.changed.update(outcome.changed_globals)

    def changed_names(self):
        """The globals found changed, by either pass."""
        return sorted({finding.name for finding in self.findings} | self.changed)

    def report(self, func_name, results):
        if not self.active or not (self.findings or self.changed):
            return  # nothing to warn about: results are not even looked at
        done = [value for value in results if value is not NOT_COMPUTED]
        all_none = bool(done) and all(value is None for value in done)
        code = getattr(self.func, "__code__", None)
        filename = code.co_filename if code else None
        warn(func_name, self.findings, self.changed, self.isolation, all_none, filename)


def warn(func_name, findings, changed_names, isolation, all_none, filename):
    """Issue at most one warning for a run. ``isolation`` is "processes" or
    "threads"; ``findings`` come from the static pass, ``changed_names`` from
    the workers."""
    if not findings and not changed_names:
        return
    if findings:
        first = findings[0]
        names = sorted({f.name for f in findings} | set(changed_names))
        where = f" (line {first.lineno}: {first.line})" if first.line else ""
        lineno = first.lineno or 1
    else:
        names, where, lineno = sorted(changed_names), " (seen while it ran)", 1
    listed = ", ".join(names)
    text = f"{func_name} changes the global {listed}{where}. "
    if isolation == "threads":
        text += (
            "With the threading backend the threads share the notebook's "
            f"{listed} and change it without synchronisation: updates can race "
            "and be lost. Returning values and using the result list is safer."
        )
    else:
        text += (
            "Each worker process changes its own copy, so the change is lost: "
            f"the notebook's {listed} is unchanged. Return the value instead and "
            "use the result list (e.g. `return value` in the function and "
            f"`values = %pmap {func_name} ...`)."
        )
    if all_none:
        text += f" Every result is None: {func_name} returns nothing."
    warning_display.warn(text, GlobalMutationWarning, filename or "<parmagic>", lineno)
