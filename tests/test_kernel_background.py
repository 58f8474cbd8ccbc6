"""A background run's cell in a live kernel: it updates in place until the
run ends, keeps the run's own output, and says how the run ended."""

import queue
import time

import pytest
from kernel import ANSI_CODES, STOP_ON_ERROR, parmagic_kernel

CELLS = '''
import os, time
def gated(x, gate):
    print(f"item {x} says hi")
    while not os.path.exists(gate):
        time.sleep(0.01)
    return 1 / x
'''
DEADLINE = 60  # seconds


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel(CELLS) as kernel:
        yield kernel


def start_cell(kernel, code):
    """Run ``code``; return its message id and what it showed, by kind."""
    message_id = kernel.client.execute(code, stop_on_error=STOP_ON_ERROR)
    shown = []
    while True:
        message = kernel.client.get_iopub_msg(timeout=DEADLINE)
        if message["parent_header"].get("msg_id") != message_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return message_id, shown
        if kind in ("display_data", "execute_result", "stream", "error"):
            shown.append((kind, content))


def messages_until(kernel, condition):
    """iopub messages until one satisfies ``condition``; all of them."""
    seen = []
    ends = time.monotonic() + DEADLINE
    while time.monotonic() < ends:
        try:
            message = kernel.client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        seen.append(message)
        if condition(message):
            return seen
    raise AssertionError(f"never came; saw {[m['msg_type'] for m in seen]}")


def final_update(message, says):
    return (message["msg_type"] == "update_display_data"
            and says in message["content"]["data"]["text/plain"])


@pytest.mark.parametrize("items, ends_with", [
    ("[1, 2, 4, 5]", "background run of gated done: 4 of 4 finished, 0 failed"),
    ("[1, 2, 0, 5]", "background run of gated failed: 3 of 4 finished, 1 failed"),
])
def test_the_starting_cell_shows_the_run_live_and_keeps_its_output(kernel, tmp_path, items,
                                                                     ends_with):
    gate = tmp_path / "gate"
    started, shown = start_cell(
        kernel, f"run = %pmap --bg -n 2 gated {items} [{str(gate)!r}]*4\nrun")
    # one live view, though `run` is shown again on the cell's last line
    views = [content for kind, content in shown if kind in ("display_data", "execute_result")]
    assert len(views) == 1, shown
    display_id = views[0]["transient"]["display_id"]
    assert views[0]["data"]["text/plain"].startswith("running in the background: 0 of 4")

    _, meanwhile = start_cell(kernel, f"open({str(gate)!r}, 'w').close()\nprint('meanwhile')")
    # (the line may come in two stream messages: the live view flushes too)
    assert "".join(content["text"] for kind, content in meanwhile) == "meanwhile\n"

    seen = messages_until(kernel, lambda message: final_update(message, ends_with))
    final = seen[-1]
    assert final["content"]["transient"]["display_id"] == display_id
    printed = "".join(
        message["content"]["text"] for message in seen
        if message["msg_type"] == "stream"
        and message["parent_header"].get("msg_id") == started)
    assert printed == "".join(f"item {x} says hi\n" for x in eval(items))
    if "gated failed" in ends_with:
        text = ANSI_CODES.sub("", final["content"]["data"]["text/plain"])
        assert "ZeroDivisionError: division by zero; item 2 ((0, " in text
        assert "(.result() raises it)" in text
