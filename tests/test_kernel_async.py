"""``%pmap`` of an ``async def`` function in a live kernel, whose main
thread already runs an event loop: the items run on a loop of their own, and
their output is shown per item, in order."""

import pytest
from kernel import parmagic_kernel

SETUP = """
import asyncio
async def fetch(x):
    print("asked", x)
    await asyncio.sleep(0.05 * (3 - x))
    print("answered", x)
    return x * 10
"""


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel() as live:
        live.text(SETUP)
        yield live


@pytest.mark.parametrize("options", ["", "-n 2", "-b sequential", "-b loky -n 2"])
def test_an_async_function_maps_as_a_loop_would_and_shows_each_items_output(kernel, options):
    reply, outputs = kernel.execute(f"%pmap --no-progress {options} fetch range(3)")
    assert reply["status"] == "ok", outputs
    printed = "".join(text for kind, text in outputs if kind == "stdout")
    assert printed == "".join(f"asked {x}\nanswered {x}\n" for x in range(3))
    assert outputs[-1] == ("execute_result", "[0, 10, 20]")


def test_the_record_names_the_event_loop(kernel):
    kernel.text("%pmap --no-progress fetch range(2)")
    assert "asyncio" in kernel.text("_parmap")
