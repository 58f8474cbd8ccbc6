"""``--iter`` and ``--until`` in a live kernel: an iterator taken across
cells, a loop left early that stops the run, and a run that stops at the
first result that satisfies a predicate; and what a running item prints,
shown in its cell before the item ends."""

import os

import pytest
from kernel import parmagic_kernel

SETUP = """
import time
def slow(x):
    time.sleep(0.05)
    return x * 2
def search(x):
    time.sleep(0.05 if x <= 3 else 60)
    return x * x
"""


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel() as live:
        live.text(SETUP)
        yield live


@pytest.mark.timeout(120)
def test_results_are_taken_cell_by_cell(kernel):
    kernel.text("results = %pmap --iter -n 2 slow range(6)")
    assert kernel.text("print(next(results), next(results))") == "0 2\n"
    assert kernel.text("print(list(results), _parmap.status)") == "[4, 6, 8, 10] done\n"


@pytest.mark.timeout(120)
def test_leaving_the_loop_stops_the_run(kernel):
    shown = kernel.text("results = %pmap --iter -n 2 slow range(10_000)\n"
                        "for value in results:\n    if value == 4:\n        break\n"
                        "results.close()\nprint(_parmap.status, _parmap.results[:3])")
    assert shown.endswith("cancelled [0, 2, 4]\n")
    assert kernel.text("%pmap -n 2 --no-progress abs [-3]").strip() == "[3]"


@pytest.mark.timeout(120)
def test_until_stops_the_run_at_the_first_hit_and_the_kernel_goes_on(kernel):
    reply, outputs = kernel.execute(
        "%pmap -n 2 --batch-size 1 --no-progress --until 'lambda r: r == 9' search range(40)")
    assert reply["status"] == "ok", outputs
    assert outputs[-1][0] == "execute_result" and "9, <not computed>" in outputs[-1][1]
    assert kernel.text("print(_parmap.status, _parmap.stopped_by)") == "stopped 3\n"
    assert kernel.text("%pmap -n 2 --no-progress abs [-5]").strip() == "[5]"


LONG_ITEM = """
import os, time
def long_item(x):
    print('working on', x, flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists({release!r}) and time.monotonic() < deadline:
        time.sleep(0.01)
    print('finished', x)
    return os.path.exists({release!r})
"""


@pytest.mark.timeout(120)
def test_a_running_items_print_reaches_the_cell_before_it_ends(kernel, tmp_path):
    # the items wait for a file created when the first one's print arrives
    release = str(tmp_path / "release")
    kernel.text(LONG_ITEM.format(release=release))

    def on_output(kind, text):
        if kind == "stdout" and "working on 0" in text:
            open(release, "w").close()

    reply, outputs = kernel.execute("%pmap -n 2 --no-progress long_item range(3)",
                                    on_output=on_output)
    assert reply["status"] == "ok", outputs
    printed = "".join(text for kind, text in outputs if kind == "stdout")
    assert printed == "".join(f"working on {x}\nfinished {x}\n" for x in range(3))
    assert outputs[-1] == ("execute_result", "[True, True, True]")
    assert os.path.exists(release)
