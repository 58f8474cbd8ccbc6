"""Failures as an IPython terminal user reads them: like the same failure in
a serial loop, with parmagic's note and nothing of parmagic, joblib, loky,
concurrent.futures or IPython's own code. Each test runs an .ipy script
through the ipython command (a script is one cell: it stops at its error)."""

import sys

import pytest
from shown import assert_no_machinery, in_order
from terminal import run_ipython

PRELUDE = """\
%config ParMagic.warm_pool = False
%load_ext parmagic
import os, pathlib, signal, threading, time
def inv(x):
    return 1 / x
"""
def shown(tmp_path, script):
    stdout, stderr = run_ipython(tmp_path, PRELUDE + script)
    assert_no_machinery(stdout + stderr)
    return stdout + stderr


def test_a_failing_item_shows_the_cell_then_the_function_then_the_note(tmp_path):
    text = shown(tmp_path, "%pmap -n 2 inv [1, 2, 0, 4]\n")
    in_order(text, "ZeroDivisionError                         Traceback",
             "----> 6 get_ipython().run_line_magic('pmap', '-n 2 inv [1, 2, 0, 4]')",
             "in inv(x)", "----> 5     return 1 / x",
             "ZeroDivisionError: division by zero",
             "parmagic: item 2 (0) failed; 3 of 4 results had finished")
    assert text.count("---->") == 2  # the cell's line and the function's, each once


def test_each_function_s_frame_is_headed_by_its_parameters_as_in_a_serial_loop(tmp_path):
    # IPython heads a frame `in helper(a, scale, *rest, **opts)`; a rebuilt
    # frame has the same parameters (their values stayed in the worker)
    text = shown(tmp_path, """\
def helper(a, *rest, scale=1, **opts):
    return [1 / v for v in rest] + [a / scale]
def f(x):
    return helper(x, x, scale=x, flag=True)
%pmap -n 2 --no-progress f [1, 0]
""")
    # 3.12 inlines comprehensions (PEP 709): a serial loop shows no <listcomp> frame
    listcomp = ["in <listcomp>(.0)"] if sys.version_info < (3, 12) else []
    in_order(text, "in f(x)", "in helper(a, scale, *rest, **opts)", *listcomp,
             "----> 7     return [1 / v for v in rest] + [a / scale]",
             "ZeroDivisionError: division by zero")
    assert listcomp or "<listcomp>" not in text


def test_collected_failures_show_each_items_lines_under_the_cell(tmp_path):
    text = shown(tmp_path, "%pmap -n 2 --on-error collect inv [1, 0, 4, 0]\n")
    in_order(text, "Exception Group Traceback", "line 6, in <module>",
             "ExceptionGroup: 2 of 4 items failed", "line 5, in inv",
             "parmagic: item 1 (0) failed", "line 5, in inv", "parmagic: item 3 (0) failed")


def test_a_time_limit_shows_the_line_the_item_was_stopped_on(tmp_path):
    text = shown(tmp_path, "def slow(x):\n    time.sleep(x)\n    return x\n"
                           "%pmap -n 2 --no-progress --timeout 0.5 slow [0, 30, 0]\n")
    in_order(text, "in slow(x)", "----> 7     time.sleep(x)",
             "ItemTimeoutError: the item ran longer than its 0.5 s time limit",
             "parmagic: item 1 (30) failed")


def test_ctrl_c_shows_the_cell_line_and_what_was_kept(tmp_path):
    # SIGINT reaches the ipython process once an item has started, as Ctrl-C
    text = shown(tmp_path, """\
started = pathlib.Path("started")
def sleepy(x):
    started.touch()
    time.sleep(30)
def press_ctrl_c():
    while not started.exists():
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=press_ctrl_c, daemon=True).start()
%pmap -n 2 --no-progress sleepy range(4)
""")
    in_order(text, "KeyboardInterrupt                         Traceback",
             "get_ipython().run_line_magic('pmap', '-n 2 --no-progress sleepy range(4)')",
             "KeyboardInterrupt", "parmagic: interrupted; 0 of 4 results finished")
    assert len(text.strip().splitlines()) < 12, text


def test_every_item_failing_reports_item_0_and_keeps_errors_in_order(tmp_path):
    stdout, stderr = run_ipython(tmp_path, PRELUDE + """\
try:
    %pmap -n 2 --no-progress pow range(5)
except TypeError as error:
    print("note:", error.__notes__[0])
print("errors:", list(_parmap.errors))
""")
    assert "note: parmagic: item 0 (0) failed; 0 of 5 results had finished" in stdout
    errors = eval(stdout.split("errors: ")[1])  # those that failed before the run stopped
    assert errors[0] == 0 and errors == sorted(errors), stdout


def test_options_after_the_arguments_are_a_usage_error_saying_so(tmp_path):
    stdout, stderr = run_ipython(tmp_path, PRELUDE + "%pmap inv range(1, 5) -n 2\n")
    assert ("UsageError: options come first: -n 2 is after the arguments. "
            "Write: %pmap -n 2 inv range(1, 5)") in stdout + stderr
    assert "Traceback" not in stdout + stderr


@pytest.mark.parametrize("on_error", ["raise", "collect"])
def test_the_progress_bar_counts_a_timed_out_item_as_failed(tmp_path, on_error):
    stdout, stderr = run_ipython(tmp_path, PRELUDE + (
        "def slow(x):\n    time.sleep(x)\n    return x\n"
        f"%pmap -n 2 --progress --on-error {on_error} --timeout 0.5 slow [0, 30, 0]\n"))
    bar = stderr.split("Traceback")[0].split("\r")[-1]
    assert "slow:  67%" in bar and "2/3" in bar and "1 failed" in bar, stderr


def test_a_background_run_says_how_it_ended(tmp_path):
    stdout, stderr = run_ipython(tmp_path, PRELUDE + """\
run = %pmap --bg -n 2 inv [1, 2, 0, 4]
run.wait(60)
time.sleep(0)  # the end line is printed by the run's own thread, before wait returns
""")
    assert ("background run of inv failed: 3 of 4 finished, 1 failed") in stdout
    assert ("ZeroDivisionError: division by zero; item 2 (0) failed; 3 of 4 results had "
            "finished and are kept in the run record (_parmap.results in IPython) "
            "(.result() raises it)") in stdout


def test_the_mutation_warning_reads_plainly_and_filters_as_any_warning(tmp_path):
    stdout, stderr = run_ipython(tmp_path, PRELUDE + """\
A = [0, 0, 0, 0]
def update_array(i):
    global A
    A[i] = i
%pmap -n 2 --no-progress update_array range(4)
import warnings
warnings.filterwarnings("ignore", category=parmagic.GlobalMutationWarning)
%pmap -n 2 --no-progress update_array range(4)
print("after the filter")
""".replace("import warnings", "import parmagic, warnings"))
    assert stderr.startswith("GlobalMutationWarning: update_array changes the global A "
                             "(line 9: A[i] = i)."), stderr  # no file name and line first
    assert stderr.count("GlobalMutationWarning") == 1  # the filter silenced the second run
    assert max(map(len, stderr.splitlines())) <= 88  # wrapped for the notebook
    assert "after the filter" in stdout
