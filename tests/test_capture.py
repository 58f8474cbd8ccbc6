"""What items print: captured per item, shown in item order."""

import sys
import threading
import time

import pytest

from parmagic import run

BACKENDS = ["loky", "threading", "multiprocessing", "sequential"]


def chatty(x):
    time.sleep(0.02 * (5 - x))  # later items finish first
    print(f"start {x}")
    print(f"warn {x}", file=sys.stderr)
    print(f"end {x}")
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_is_shown_in_item_order_and_kept_per_item(backend, capsys):
    record = run(chatty, [range(5)], n_jobs=2, backend=backend, batch_size=1,
                 progress=False)
    shown = capsys.readouterr()
    assert shown.out == "".join(f"start {i}\nend {i}\n" for i in range(5))
    assert shown.err == "".join(f"warn {i}\n" for i in range(5))
    assert record.outputs[3] == "start 3\nwarn 3\nend 3\n"


def test_threads_printing_at_the_same_time_are_not_interleaved(capsys):
    barrier = threading.Barrier(2)

    def step_by_step(x):
        barrier.wait()
        for step in range(3):
            print(f"{x}.{step}")
            time.sleep(0.01)
        return x

    record = run(step_by_step, [range(2)], n_jobs=2, backend="threading", progress=False)
    assert capsys.readouterr().out == "0.0\n0.1\n0.2\n1.0\n1.1\n1.2\n"
    assert record.outputs == ["0.0\n0.1\n0.2\n", "1.0\n1.1\n1.2\n"]
    assert not type(sys.stdout).__name__ == "_Router"  # streams restored


def test_silent_items_have_empty_outputs(capsys):
    record = run(abs, [[-1, -2]], n_jobs=2, progress=False)
    assert record.outputs == ["", ""]
    assert capsys.readouterr().out == ""


def test_output_of_a_failing_item_is_shown_before_the_error(capsys):
    def loud_failure(x):
        print(f"about to fail on {x}")
        raise ValueError(x)

    records = []
    with pytest.raises(ValueError):
        run(loud_failure, [[7]], n_jobs=2, on_start=records.append, progress=False)
    assert capsys.readouterr().out == "about to fail on 7\n"
    assert records[0].outputs == ["about to fail on 7\n"]


def test_nested_map_output_belongs_to_the_outer_item(capsys):
    from parmagic import pmap

    def outer(x):
        pmap(print, [f"inner {x}"])
        print(f"outer {x}")
        return x

    record = run(outer, [range(2)], n_jobs=2, progress=False)
    assert record.outputs == ["inner 0\nouter 0\n", "inner 1\nouter 1\n"]
    assert capsys.readouterr().out == "inner 0\nouter 0\ninner 1\nouter 1\n"
