"""Workers see the notebook as it is now: what a serial loop in the same cell
gives is what ``%pmap`` gives, after ``%cd``, ``sys.path`` and
``os.environ`` changes, module edits (``importlib.reload``,
``%autoreload 2``), on the warm loky pool, a ``--bg`` run and
``-b multiprocessing``, in a live kernel whose pool started at ``%load_ext``.
"""

import itertools
import json
import os

import pytest
from kernel import parmagic_kernel

# How each way of running maps FUNC over DATA into `parallel`.
WAYS = {
    "loky": "parallel = %pmap -n 2 --no-progress {options} {func} {data}",
    "bg": "_handle = %pmap --bg -n 2 {options} {func} {data}\n"
          "parallel = _handle.result(timeout=60)",
    "multiprocessing": "parallel = %pmap -n 2 -b multiprocessing --no-progress {options} "
                       "{func} {data}",
}
_names = itertools.count()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    # the pool starts here, before any of the changes below
    with parmagic_kernel("import importlib, json, os, sys, time") as live:
        live.text("_ = %pmap -n 2 --no-progress abs range(4)")
        yield live


def serial_and_parallel(kernel, way, func, data="range(4)", options=""):
    """(serial loop's results, the map's results), from one cell."""
    shown = kernel.text(
        f"serial = [{func}(x) for x in {data}]\n"
        + WAYS[way].format(func=func, data=data, options=options)
        + "\nprint('\\nresults:', json.dumps([serial, parallel]))")
    return tuple(json.loads(shown.rsplit("results:", 1)[1]))


def unique(prefix):
    return f"{prefix}{next(_names)}"


@pytest.fixture(params=list(WAYS))
def way(request):
    return request.param


@pytest.fixture
def folder(kernel, tmp_path):
    """A project folder the kernel has %cd'd into; back where it was after."""
    kernel.text(f"_before = os.getcwd()\n%cd {tmp_path}")
    yield tmp_path
    kernel.text("%cd {_before}")


def test_after_cd_items_open_files_relative_to_the_new_folder(kernel, way, folder):
    (folder / "data").mkdir()
    (folder / "data" / "x.txt").write_text("hello")
    kernel.text("def read(_):\n    return open('data/x.txt').read()\n"
                "def where(_):\n    return os.getcwd()")
    assert serial_and_parallel(kernel, way, "read") == (["hello"] * 4, ["hello"] * 4)
    serial, parallel = serial_and_parallel(kernel, way, "where")
    assert parallel == serial == [str(folder)] * 4


def test_environment_variables_set_and_unset_reach_the_workers(kernel, way):
    name = unique("PARMAGIC_TEST_FLAG_")
    kernel.text(f"def flag(_):\n    return os.environ.get({name!r})")
    kernel.text(f"os.environ[{name!r}] = 'on'")
    assert serial_and_parallel(kernel, way, "flag") == (["on"] * 4, ["on"] * 4)
    kernel.text(f"del os.environ[{name!r}]")
    assert serial_and_parallel(kernel, way, "flag") == ([None] * 4, [None] * 4)


def test_a_module_in_the_new_folder_imports_in_the_workers(kernel, way, folder):
    module = unique("localmod")
    (folder / f"{module}.py").write_text("def g(x):\n    return x + 1\n")
    kernel.text(f"import {module}\ndef calls_g(x):\n    return {module}.g(x)")
    assert serial_and_parallel(kernel, way, "calls_g") == ([1, 2, 3, 4], [1, 2, 3, 4])


def test_a_folder_put_on_sys_path_reaches_the_workers(kernel, way, tmp_path):
    module = unique("helpers")
    (tmp_path / f"{module}.py").write_text("def k(x):\n    return 10 * x\n")
    kernel.text(f"sys.path.insert(0, {str(tmp_path)!r})\nimport {module}")
    try:
        assert serial_and_parallel(kernel, way, f"{module}.k") == ([0, 10, 20, 30],) * 2
    finally:
        kernel.text(f"sys.path.remove({str(tmp_path)!r})")


def aged(path):
    """Date ``path`` a minute back. A file changed within a few milliseconds
    before a worker imports it may have changed after the import read it (file
    times come from a coarse clock), so the worker imports it again at its
    next run: once, but this test counts imports."""
    then = path.stat().st_mtime_ns - 60 * 10**9
    os.utime(path, ns=(then, then))


def edit(path, body):
    # a new size too: Python's own .pyc check compares size and whole seconds
    path.write_text(f"def g(x):\n    return {body}\n")


def test_importlib_reload_after_an_edit_runs_the_new_code(kernel, way, folder):
    module = unique("edited")
    path = folder / f"{module}.py"
    edit(path, "x + 1")
    kernel.text(f"import {module}\ndef via_g(x):\n    return {module}.g(x)")
    assert serial_and_parallel(kernel, way, "via_g") == ([1, 2, 3, 4],) * 2
    assert serial_and_parallel(kernel, way, f"{module}.g") == ([1, 2, 3, 4],) * 2
    edit(path, "x + 1000")
    kernel.text(f"importlib.reload({module})")
    assert serial_and_parallel(kernel, way, "via_g") == ([1000, 1001, 1002, 1003],) * 2
    assert serial_and_parallel(kernel, way, f"{module}.g") == ([1000, 1001, 1002, 1003],) * 2


def test_autoreload_edits_reach_the_workers(kernel, way, folder):
    module = unique("auto")
    path = folder / f"{module}.py"
    edit(path, "x * 2")
    kernel.text("%load_ext autoreload\n%autoreload 2")
    try:
        kernel.text(f"from {module} import g as imported_g\nimport {module}\n"
                    f"def through_module(x):\n    return {module}.g(x)")
        assert serial_and_parallel(kernel, way, "through_module") == ([0, 2, 4, 6],) * 2
        edit(path, "x * 300")
        expected = [0, 300, 600, 900]
        assert serial_and_parallel(kernel, way, "through_module") == (expected, expected)
        assert serial_and_parallel(kernel, way, "imported_g") == (expected, expected)
    finally:
        kernel.text("%autoreload 0")


def test_a_helper_module_imported_by_the_users_module_is_fresh_too(kernel, way, folder):
    inner, outer = unique("inner"), unique("outer")
    (folder / f"{inner}.py").write_text("SCALE = 2\n")
    (folder / f"{outer}.py").write_text(f"from {inner} import SCALE\n"
                                        "def g(x):\n    return SCALE * x\n")
    kernel.text(f"import {outer}")
    assert serial_and_parallel(kernel, way, f"{outer}.g") == ([0, 2, 4, 6],) * 2
    (folder / f"{inner}.py").write_text("SCALE = 50\n")
    kernel.text(f"import {inner}\nimportlib.reload({inner})\nimportlib.reload({outer})")
    assert serial_and_parallel(kernel, way, f"{outer}.g") == ([0, 50, 100, 150],) * 2


def test_a_package_installed_again_is_the_new_version_in_the_workers(kernel, way):
    # as pip upgrades a package: its old files go, the new ones come, in
    # this environment's site-packages (which a kernel of the test suite's
    # own virtualenv owns)
    package = unique("parmagic_test_installed_")
    kernel.text(
        "import shutil, sysconfig\n"
        f"_installed = os.path.join(sysconfig.get_paths()['purelib'], {package!r})\n"
        "def install(version):\n"
        "    shutil.rmtree(_installed, ignore_errors=True)\n"
        "    os.mkdir(_installed)\n"
        "    with open(os.path.join(_installed, '__init__.py'), 'w') as file:\n"
        "        file.write(f'VERSION = {version}\\n')\n"
        "    importlib.invalidate_caches()\n"
        f"install(1)\nimport {package}\n"
        f"def version(_):\n    return {package}.VERSION")
    try:
        assert serial_and_parallel(kernel, way, "version") == ([1] * 4,) * 2
        kernel.text(f"install(2)\nimportlib.reload({package})")
        assert serial_and_parallel(kernel, way, "version") == ([2] * 4,) * 2
    finally:
        kernel.text("shutil.rmtree(_installed, ignore_errors=True)")


def test_unchanged_modules_are_not_imported_again_on_each_call(kernel, folder):
    module = unique("counted")
    log = folder / "imports.log"
    (folder / f"{module}.py").write_text(
        f"import os\nwith open({str(log)!r}, 'a') as _log:\n    _log.write(f'{{os.getpid()}}\\n')\n"
        "def g(x):\n    return x\n")
    aged(folder / f"{module}.py")
    kernel.text(f"import {module}")
    for _ in range(4):
        kernel.text(f"_ = %pmap -n 2 --no-progress {module}.g range(8)")
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)), f"a worker imported {module} more than once: {pids}"
    assert len(pids) <= 3  # the kernel, and once in each of the two workers


def test_the_cache_recomputes_after_a_module_edit(kernel, folder):
    module = unique("cached")
    path = folder / f"{module}.py"
    edit(path, "x + 1")
    kernel.text(f"import {module}\ndef uses(x):\n    return {module}.g(x)")
    line = f"values = %pmap -n 2 --no-progress --cache {folder / 'cache'} uses range(4)"

    def cached_run():
        return kernel.text(f"{line}\nprint(values, _parmap.n_cached)").split("]")

    assert cached_run() == ["[1, 2, 3, 4", " 0\n"]
    assert cached_run() == ["[1, 2, 3, 4", " 4\n"]  # unchanged: from disk
    edit(path, "x + 500")
    kernel.text(f"importlib.reload({module})")
    assert cached_run() == ["[500, 501, 502, 503", " 0\n"]


def test_a_seed_gives_the_same_numbers_on_every_run_and_way(kernel, way):
    kernel.text("import numpy as np, random, parmagic\n"
                "def draws(_):\n"
                "    return [np.random.rand(), random.random(), parmagic.rng().random()]")
    kernel.text("np.random.seed(0)")  # the notebook's own seeding does not decide it
    _, first = serial_and_parallel(kernel, way, "draws", "range(6)", "--seed 7")
    _, again = serial_and_parallel(kernel, way, "draws", "range(6)", "--seed 7")
    _, loky = serial_and_parallel(kernel, "loky", "draws", "range(6)", "--seed 7 --batch-size 6")
    assert first == again == loky
    assert len({tuple(item) for item in first}) == 6


def test_without_a_seed_no_two_items_draw_the_same_numbers(kernel, way):
    kernel.text("import numpy as np\ndef legacy(_):\n    return float(np.random.rand())")
    kernel.text("np.random.seed(0)")  # a fork would copy this state into every worker
    _, values = serial_and_parallel(kernel, way, "legacy", "range(8)", "--batch-size 1")
    assert len(set(values)) == 8
