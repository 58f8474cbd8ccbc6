"""The notebook's working directory, sys.path and environment reach warm
workers at every run (engine level; tests/test_kernel_present.py has the
notebook's view)."""

import os
import pickle
import sys

import pytest

from parmagic import pmap
from parmagic.worker import present


def where(_):
    return os.getcwd()


def variable(name):
    return os.environ.get(name)


def importable(name):
    import importlib

    return importlib.import_module(name).VALUE


@pytest.fixture
def warm():
    pmap(abs, range(4), n_jobs=2)  # the pool's workers start here, before the changes


def test_a_changed_working_directory_reaches_warm_workers(warm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pmap(where, range(4), n_jobs=2) == [str(tmp_path)] * 4


def test_environment_variables_set_changed_and_unset_reach_warm_workers(warm, monkeypatch):
    name = "PARMAGIC_PRESENT_TEST"
    monkeypatch.setenv(name, "one")
    assert pmap(variable, [name] * 4, n_jobs=2) == ["one"] * 4
    monkeypatch.setenv(name, "two")
    assert pmap(variable, [name] * 4, n_jobs=2) == ["two"] * 4
    monkeypatch.delenv(name)
    assert pmap(variable, [name] * 4, n_jobs=2) == [None] * 4


def test_a_folder_added_to_sys_path_reaches_warm_workers(warm, tmp_path, monkeypatch):
    (tmp_path / "present_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert pmap(importable, ["present_probe"] * 4, n_jobs=2) == [42] * 4
    finally:
        sys.modules.pop("present_probe", None)


def test_an_unchanged_present_is_not_pickled_again(monkeypatch, tmp_path):
    first, second = present.now("a"), present.now("b")
    assert second.state is first.state  # the same bytes: nothing made anew
    monkeypatch.setenv("PARMAGIC_PRESENT_TEST", "x")
    assert present.now("c").state != first.state
    monkeypatch.chdir(tmp_path)
    assert str(tmp_path).encode() in present.now("d").state


def test_the_notebook_never_takes_its_own_present_on(tmp_path):
    other = present.Present(pickle.dumps(("/", list(sys.path), ())), "f")
    here = os.getcwd()
    present.arrive(*other.__reduce__()[1])  # unpickled in the notebook's own process
    assert os.getcwd() == here


def remember_where():
    global SETUP_CWD
    SETUP_CWD = os.getcwd()


def where_setup_ran(_):
    return SETUP_CWD, os.getcwd()


def test_init_runs_in_the_notebooks_present(warm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pmap(where_setup_ran, range(4), n_jobs=2, init=remember_where) == [
        (str(tmp_path), str(tmp_path))] * 4


def crash_first_time(x, marker):
    if x == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)  # the worker dies; its replacement runs the item again
    return os.getcwd(), os.environ.get("PARMAGIC_PRESENT_TEST")


def test_an_item_retried_on_a_new_worker_runs_in_the_notebooks_present(
        warm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARMAGIC_PRESENT_TEST", "retried")
    marker = str(tmp_path / "crashed")
    results = pmap(crash_first_time, range(4), [marker] * 4, n_jobs=2, retries=1,
                   retry_on="WorkerCrashError")
    assert os.path.exists(marker)  # item 1 did crash its first worker
    assert results == [(str(tmp_path), "retried")] * 4
