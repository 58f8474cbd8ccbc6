"""The package's layers: imports go one way, from the IPython layer down to
``common``, with no cycle even through imports made inside functions, and
what a worker process imports stays light. docs/architecture.md draws it."""

import ast
import pathlib
import subprocess
import sys

import pytest

import parmagic

PACKAGE = pathlib.Path(parmagic.__file__).parent
# top first: a module may import its own layer's modules and those below
LAYERS = ["ipython", "engine", "runs", "guard", "display", "transport", "data", "worker",
          "common"]
# what no worker process may import: the notebook's side of parmagic
NOTEBOOK_ONLY = ("IPython", "tqdm", "parmagic.ipython", "parmagic.engine", "parmagic.runs",
                 "parmagic.guard", "parmagic.display")


def module_names():
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name, path, known):
    """The parmagic modules ``name`` imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {imported for imported in found if imported in known and imported != name}


def graph():
    known = module_names()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer(name):
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else -1  # parmagic itself: the top


def test_every_module_is_in_a_layer():
    assert {name.split(".")[1] for name in graph() if "." in name} == set(LAYERS)


def test_imports_go_down_the_layers_only():
    upward = sorted(f"{name} imports {imported}" for name, imports in graph().items()
                    for imported in imports
                    if name != "parmagic" and layer(imported) < layer(name))
    assert not upward, "\n".join(upward)


def find_cycle(edges):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(name, path):
        state[name] = "open"
        for imported in sorted(edges[name]):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported, path + [imported])
                if cycle:
                    return cycle
        state[name] = "done"
        return None

    for name in sorted(edges):
        if name not in state:
            cycle = visit(name, [name])
            if cycle:
                return cycle
    return None


def test_there_is_no_import_cycle():
    # a package imports its own modules only lazily (parmagic.__getattr__)
    edges = {name: {imported for imported in imports if not name.startswith(imported + ".")}
             for name, imports in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_private_api_adapter_is_a_leaf():
    assert graph()["parmagic.common.joblib_internals"] == set()


def test_what_a_worker_imports_to_serve_holds_nothing_of_the_notebook_side():
    # what a loky worker's first task (its channel's serve) and a chunk import
    code = ("import sys, parmagic.transport.worker_channel, parmagic.worker.chunk; "
            f"print([m for m in sys.modules if m.startswith({NOTEBOOK_ONLY!r})])")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert found == "[]"


@pytest.mark.timeout(120)
def test_a_loky_worker_has_not_imported_the_notebook_side():
    from parmagic import pmap, shutdown_workers

    shutdown_workers()  # fresh workers: nothing an earlier test ran is in them
    held = pmap(eval, ["[m for m in __import__('sys').modules if m.startswith(%r)]"
                       % (NOTEBOOK_ONLY,)] * 2, n_jobs=2)
    assert held == [[], []]
