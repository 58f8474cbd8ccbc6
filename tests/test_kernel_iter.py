"""``%pmap --iter`` in a live kernel: the iterator is taken across cells,
each result as it comes, and leaving the loop early stops the run."""

import pytest
from kernel import parmagic_kernel


@pytest.fixture(scope="module")
def kernel():
    with parmagic_kernel() as live:
        live.text("import time\ndef slow(x):\n    time.sleep(0.05)\n"
                  "    return x * 2\n")
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
