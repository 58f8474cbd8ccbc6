"""A failed run reads like the same failure in a serial loop: the cell's
line, the function's lines, the exception and parmagic's note; no frames of
parmagic, joblib, loky, concurrent.futures or IPython itself."""

import pickle

import pytest
from shown import assert_no_machinery, in_order

CELL = "def inv(x):\n    return 1 / x\n"


def shown(shell, capsys, source):
    """What the user reads after running ``source`` as a cell that fails."""
    capsys.readouterr()
    result = shell.run_cell(source)
    assert not result.success
    captured = capsys.readouterr()
    return captured.out + captured.err


def assert_reads_like_a_serial_failure(text):
    assert_no_machinery(text)
    assert text.count("return 1 / x") == 1, text  # the user's line, once


def test_a_failing_item_shows_the_cell_line_then_the_function_line(shell, capsys):
    shell.run_cell(CELL)
    text = shown(shell, capsys, "%pmap -n 2 inv [1, 2, 0, 4]")
    assert_reads_like_a_serial_failure(text)
    in_order(text, "run_line_magic('pmap', '-n 2 inv [1, 2, 0, 4]')",
             "----> 2     return 1 / x", "ZeroDivisionError: division by zero",
             "parmagic: item 2 (0) failed; 3 of 4 results had finished")


def test_collected_failures_show_only_the_cell_and_each_items_lines(shell, capsys):
    shell.run_cell(CELL)
    text = shown(shell, capsys, "%pmap -n 2 --on-error collect inv [1, 0, 4, 0]")
    assert_no_machinery(text)
    assert text.count("return 1 / x") == 2  # once per failed item
    assert "2 of 4 items failed" in text
    in_order(text, "parmagic: item 1 (0) failed", "parmagic: item 3 (0) failed")
    assert "^^^" not in text  # a rebuilt frame has no columns to point at


def test_a_time_limit_shows_where_the_item_was_stopped(shell, capsys):
    shell.run_cell("import time\ndef slow(x):\n    time.sleep(x)\n    return x\n")
    text = shown(shell, capsys, "%pmap -n 2 --timeout 0.5 --no-progress slow [0, 30, 0]")
    assert_no_machinery(text)
    assert "----> 3     time.sleep(x)" in text
    assert "ItemTimeoutError: the item ran longer than its 0.5 s time limit" in text
    assert "parmagic: item 1 (30) failed" in text


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_result_of_a_failed_background_run_shows_the_users_lines(shell, capsys, backend):
    shell.run_cell(CELL)
    shell.run_cell(f"run = %pmap --bg -n 2 -b {backend} inv [1, 0]")
    for _ in range(2):  # asked again, it reads the same, not with both calls' lines
        text = shown(shell, capsys, "run.result()")
        assert_reads_like_a_serial_failure(text)
        in_order(text, "----> 1 run.result()", "----> 2     return 1 / x")
        assert text.count("---->") == 2, text


def test_result_of_a_cancelled_background_run_says_it_was_cancelled(shell, capsys, tmp_path):
    shell.run_cell(f"import pathlib, time\nstarted = pathlib.Path({str(tmp_path)!r})\n"
                   "def wait(x):\n    (started / str(x)).touch()\n    time.sleep(30)\n")
    shell.run_cell("run = %pmap --bg -n 2 wait range(2)")
    shell.run_cell("while not list(started.iterdir()): time.sleep(0.01)\nrun.cancel()")
    text = shown(shell, capsys, "run.result()")
    assert_no_machinery(text)
    assert "----> 1 run.result()" in text
    assert "RunCancelled" in text and "parmagic: cancelled; 0 of 2 results finished" in text


def test_a_failed_items_exception_still_pickles(shell):
    shell.run_cell(CELL)
    shell.run_cell("%pmap -n 2 inv [1, 0]")
    error = shell.user_ns["_parmap"].errors[1].exception
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ZeroDivisionError and copy.__notes__ == error.__notes__
    assert copy._render_traceback_()[-2:] == error._render_traceback_()[-2:]  # the same end
