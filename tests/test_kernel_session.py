"""%pmap in a live ipykernel, driven through jupyter_client."""


import pytest
from kernel import parmagic_kernel, shown_traceback



@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel() as live:
        yield live


def test_pmap_shows_ordered_results_as_out(kernel):
    kernel.text("def square(x):\n    return x * x\n")
    # --no-progress: the first run starts the workers, which on a slow machine
    # takes over a second, and then a bar would be among the outputs
    reply, outputs = kernel.execute("%pmap -n 2 --no-progress square range(10)")
    assert reply["status"] == "ok"
    assert outputs == [("execute_result", "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]")]


def test_cell_magic_and_out_binding_in_the_kernel(kernel):
    shown = kernel.text("%%parmap -n 2 -o cubes range(4)\ndef cube(x):\n    return x ** 3\n")
    assert "[0, 1, 8, 27]" in shown
    assert kernel.text("print(cubes, cube(5))") == "[0, 1, 8, 27] 125\n"


def test_record_is_bound_and_readable(kernel):
    kernel.text("%pmap -n 2 abs [-1, -2]")
    shown = kernel.text("_parmap")
    assert "done" in shown and "2 finished" in shown and "loky" in shown


def test_usage_error_is_one_line_and_the_kernel_lives(kernel):
    reply, outputs = kernel.execute("%pmap -n 0 abs [1]")
    assert reply["status"] == "error"
    assert reply["ename"] == "UsageError"
    assert "n_jobs=0" in reply["evalue"]
    assert kernel.text("%pmap -n 2 --no-progress abs [-3]").strip() == "[3]"


def test_item_error_names_the_item_and_keeps_results(kernel):
    kernel.text("def inv(x):\n    return 1 / x\n")
    reply, _ = kernel.execute("%pmap -n 2 --batch-size 1 inv [1, 2, 0, 4]")
    assert reply["status"] == "error"
    assert reply["ename"] == "ZeroDivisionError"
    traceback = shown_traceback(reply)
    assert "return 1 / x" in traceback
    assert "item 2 (0)" in traceback
    shown = kernel.text("print(_parmap.results[2], list(_parmap.errors), _parmap.n_finished)")
    finished = int(shown.split()[-1])
    assert shown == f"<not computed> [2] {finished}\n"
    assert f"{finished} of 4 results had finished" in traceback


def test_items_log_records_show_in_the_cell_as_a_loop_would_show_them(kernel):
    kernel.text("import logging\nlogging.basicConfig(level=logging.INFO, force=True)\n"
                "def noisy(x):\n    logging.getLogger('work').info('step %d', x)\n"
                "    print('done', x)\n    return x\n")
    reply, outputs = kernel.execute("%pmap -n 2 --batch-size 1 --no-progress noisy range(3)")
    assert reply["status"] == "ok"
    shown = [(kind, text) for kind, text in outputs if kind in ("stdout", "stderr")]
    assert "".join(text for kind, text in shown if kind == "stderr") == "".join(
        f"INFO:work:step {x}\n" for x in range(3))
    assert "".join(text for kind, text in shown if kind == "stdout") == "".join(
        f"done {x}\n" for x in range(3))
