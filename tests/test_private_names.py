"""Private names of argparse, IPython, cloudpickle and loky that parmagic relies on
outside ``joblib_internals`` (whose own test checks joblib's and loky's
attributes), and the text of loky's that it reads: if an upgrade changes
one, this fails by name instead of a magic misparsing or a crash report
losing its cause."""

import argparse
import inspect
import os
from concurrent.futures.process import BrokenProcessPool

import cloudpickle
import pytest
from IPython.core.interactiveshell import InteractiveShell
from joblib.externals.loky import ProcessPoolExecutor

from parmagic.common.errors import crash_message


def test_argparse_keeps_its_table_of_option_strings():
    # magics._parsed_options asks it which words are options taking a value
    parser = argparse.ArgumentParser()
    n_jobs = parser.add_argument("-n", "--n-jobs", type=int)
    star = parser.add_argument("--star", action="store_true")
    table = parser._option_string_actions
    assert table["-n"] is n_jobs and table["--n-jobs"] is n_jobs
    assert table["--star"] is star and star.nargs == 0 and n_jobs.nargs is None


def test_ipython_shows_an_already_rendered_traceback():
    # error_display._show_group hands it the lines parmagic rendered
    parameters = list(inspect.signature(InteractiveShell._showtraceback).parameters)
    assert parameters[:4] == ["self", "etype", "evalue", "stb"]


def test_loky_names_the_exit_code_of_a_dead_worker_where_crash_message_reads_it():
    executor = ProcessPoolExecutor(1)
    try:
        error = executor.submit(os._exit, 3).exception(timeout=60)
    finally:
        executor.shutdown(kill_workers=True)
    assert isinstance(error, BrokenProcessPool)
    assert "worker process died (EXIT(3))" in crash_message(str(error), [0])


def test_cloudpickle_rebuilds_a_class_by_value_through_the_names_error_transport_reads():
    # error_transport._KeepClassesDefinedHere recognises these two while
    # unpickling and reads the class tracker, so that an exception of a
    # notebook class keeps the notebook's class
    internals = cloudpickle.cloudpickle
    assert list(inspect.signature(internals._make_skeleton_class).parameters)[4] == (
        "class_tracker_id")
    assert list(inspect.signature(internals._class_setstate).parameters) == ["obj", "state"]
    namespace = {"__name__": "__main__"}
    exec("class Notebooks(Exception):\n    pass\n", namespace)
    blob = cloudpickle.dumps(namespace["Notebooks"]())
    assert b"_make_skeleton_class" in blob and b"_class_setstate" in blob
    tracked = internals._DYNAMIC_CLASS_TRACKER_BY_ID
    assert any(cls is namespace["Notebooks"] for cls in tracked.values())


def test_multiprocessing_s_forkserver_says_whether_it_runs_and_stops_on_request():
    # parallel_run stops the forkserver that -b multiprocessing runs started
    import multiprocessing
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver on this platform")
    from multiprocessing import forkserver

    server = forkserver.ForkServer()
    assert server._forkserver_pid is None
    server.ensure_running()
    try:
        assert server._forkserver_pid is not None
    finally:
        server._stop()
    assert server._forkserver_pid is None
    assert forkserver._forkserver.__class__ is forkserver.ForkServer
