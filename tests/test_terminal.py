"""parmagic in the IPython terminal: an .ipy script run by the ipython command."""

import pytest
from terminal import run_ipython, run_ipython_answering

SCRIPT = """\
%load_ext parmagic
def square(x):
    return x * x

squares = %pmap -n 2 square range(6)
print("squares:", squares)
%pmap -n 2 -o pairs pow, range(4), [2] * 4
print("pairs:", pairs)
print("record:", _parmap.status, _parmap.backend, _parmap.n_jobs)
def shout(x):
    print(f"item {x} says hi")
    return x
%pmap -n 2 --progress shout range(3)
print("outputs:", _parmap.outputs)
%pmap -n 0 square range(2)
"""


def test_ipy_script_runs_in_the_ipython_terminal(tmp_path):
    stdout, stderr = run_ipython(tmp_path, SCRIPT)
    output = stdout + stderr
    assert "squares: [0, 1, 4, 9, 16, 25]" in output
    assert "pairs: [0, 1, 4, 9]" in output
    assert "record: done loky 2" in output
    assert "UsageError: n_jobs=0 runs nothing" in output
    assert "item 0 says hi\nitem 1 says hi\nitem 2 says hi\n" in stdout
    assert "3/3" in stderr  # the text progress bar
    assert "outputs: ['item 0 says hi\\n'," in stdout
    assert "Traceback" not in output


ASYNC_SCRIPT = """\
%load_ext parmagic
import asyncio
async def answer(x):
    print("asked", x)
    await asyncio.sleep(0.01 * (3 - x))
    return x + 1
answers = %pmap -n 3 answer range(3)
print("answers:", answers, _parmap.backend)
"""


def test_an_async_function_maps_in_the_ipython_terminal(tmp_path):
    stdout, stderr = run_ipython(tmp_path, ASYNC_SCRIPT)
    assert "asked 0\nasked 1\nasked 2\n" in stdout
    assert "answers: [1, 2, 3] asyncio" in stdout
    assert "Traceback" not in stdout + stderr


LIVE_SCRIPT = """\
%load_ext parmagic
import os, time
def long_item(x):
    print("working on", x, flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists("release") and time.monotonic() < deadline:
        time.sleep(0.01)
    print("finished", x)
    return os.path.exists("release")
released = %pmap -n 2 --no-progress long_item range(2)
print("released:", released)
"""


@pytest.mark.timeout(180)
def test_a_running_items_print_shows_in_the_terminal_before_it_ends(tmp_path):
    # the items wait for a file the test creates once it reads the first print
    lines, stderr = run_ipython_answering(
        tmp_path, LIVE_SCRIPT, "working on 0", (tmp_path / "release").touch)
    assert "".join(lines).endswith(
        "working on 0\nfinished 0\nworking on 1\nfinished 1\nreleased: [True, True]\n")
    assert "Traceback" not in "".join(lines) + stderr
