"""``--until`` in a live kernel: the run stops at a result that satisfies
the predicate, shows what finished, and the record names the item."""

import pytest
from kernel import parmagic_kernel


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel() as live:
        live.text("import time\ndef search(x):\n    time.sleep(0.05 if x <= 3 else 60)\n"
                  "    return x * x\n")
        yield live


@pytest.mark.timeout(120)
def test_the_run_stops_at_the_first_hit_and_the_kernel_goes_on(kernel):
    reply, outputs = kernel.execute(
        "%pmap -n 2 --batch-size 1 --no-progress --until 'lambda r: r == 9' search range(40)")
    assert reply["status"] == "ok", outputs
    assert outputs[-1][0] == "execute_result" and "9, <not computed>" in outputs[-1][1]
    assert kernel.text("print(_parmap.status, _parmap.stopped_by)") == "stopped 3\n"
    assert kernel.text("%pmap -n 2 --no-progress abs [-5]").strip() == "[5]"
