"""In a worker: the user's modules that a run imported are dropped at the
next run once their files change, and only then."""

import importlib
import os
import sys

import pytest

from parmagic.worker import fresh_modules


@pytest.fixture
def worker(monkeypatch, tmp_path):
    """This process, acting as a worker whose first run begins now, with
    ``tmp_path`` on sys.path."""
    monkeypatch.setattr(fresh_modules, "_seen", None)
    monkeypatch.setattr(fresh_modules, "_noted", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    fresh_modules.start()
    fresh_modules.refresh()
    yield tmp_path
    for name in [name for name in sys.modules if name.startswith("fresh_probe")]:
        del sys.modules[name]


def write(path, text, age_seconds=60):
    path.write_text(text)
    then = path.stat().st_mtime_ns - age_seconds * 10**9  # written well before the run
    os.utime(path, ns=(then, then))


def run_importing(name):
    module = importlib.import_module(name)
    fresh_modules.note_imports()  # as at the end of a chunk
    return module


def test_an_edited_module_and_the_users_modules_beside_it_are_dropped(worker):
    write(worker / "fresh_probe_a.py", "value = 1\n")
    write(worker / "fresh_probe_b.py", "from fresh_probe_a import value\n")
    run_importing("fresh_probe_b")
    generation = fresh_modules.generation
    assert fresh_modules.refresh() is False  # nothing changed: nothing dropped
    assert "fresh_probe_b" in sys.modules
    write(worker / "fresh_probe_a.py", "value = 222\n", age_seconds=30)
    assert fresh_modules.refresh() is True
    assert "fresh_probe_a" not in sys.modules and "fresh_probe_b" not in sys.modules
    assert fresh_modules.generation == generation + 1
    assert run_importing("fresh_probe_b").value == 222


def test_a_file_changed_just_before_its_import_is_imported_again_once(worker):
    path = worker / "fresh_probe_c.py"
    write(path, "value = 1\n", age_seconds=0)
    first = run_importing("fresh_probe_c")
    write(path, "value = 1\n")  # the next run comes a while after the change
    assert fresh_modules.refresh() is True  # the change may have come after the import
    assert run_importing("fresh_probe_c") is not first
    assert fresh_modules.refresh() is False


def test_a_module_whose_file_is_gone_stays_loaded(worker):
    write(worker / "fresh_probe_d.py", "value = 1\n")
    run_importing("fresh_probe_d")
    (worker / "fresh_probe_d.py").unlink()
    assert fresh_modules.refresh() is False
    assert "fresh_probe_d" in sys.modules


def test_modules_imported_before_the_first_run_are_never_dropped(monkeypatch, tmp_path):
    write(tmp_path / "fresh_probe_e.py", "value = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fresh_modules, "_seen", None)
    monkeypatch.setattr(fresh_modules, "_noted", {})
    try:
        importlib.import_module("fresh_probe_e")  # e.g. copied by a fork
        fresh_modules.start()
        write(tmp_path / "fresh_probe_e.py", "value = 2222\n", age_seconds=30)
        fresh_modules.note_imports()
        assert fresh_modules.refresh() is False
        assert "fresh_probe_e" in sys.modules
    finally:
        sys.modules.pop("fresh_probe_e", None)


def test_the_notebook_process_notes_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(fresh_modules, "_seen", None)
    monkeypatch.setattr(fresh_modules, "_noted", {})
    write(tmp_path / "fresh_probe_f.py", "value = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        run_importing("fresh_probe_f")
        assert fresh_modules._noted == {}
    finally:
        sys.modules.pop("fresh_probe_f", None)
