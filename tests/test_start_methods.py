"""``-b multiprocessing`` with each start method: joblib's multiprocessing
pool pickles tasks with the standard pickler, and workers started by spawn
or forkserver (the default on macOS and Windows, and on Linux from Python
3.14) import a ``__main__`` of their own. A script's functions, lambdas,
classes and exceptions, like a notebook's, must work all the same."""

import subprocess
import sys
import textwrap

import pytest
from platforms import forces_fallback

SCRIPT = textwrap.dedent("""
    import multiprocessing
    import sys

    if __name__ == "__main__":
        multiprocessing.set_start_method(sys.argv[1], force=True)
        from parmagic import pmap

        OFFSET = 10

        class Point:
            def __init__(self, x):
                self.x = x

        class Odd(Exception):
            pass

        def shift(point):
            return Point(point.x + OFFSET)

        def fails_on_odd(x):
            if x % 2:
                raise Odd(f"item {x} is odd")
            return x

        run = dict(n_jobs=2, backend="multiprocessing", progress=False)
        print([p.x for p in pmap(shift, [Point(i) for i in range(4)], **run)])
        print(pmap(lambda x: x * 2, range(4), **run))
        try:
            pmap(fails_on_odd, range(4), **run)
        except Odd as exc:
            print("raised", type(exc).__name__, exc)

        import psutil
        import parmagic
        parmagic.shutdown_workers()  # a forkserver the runs started stops too
        children = {p: " ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)}
        _, alive = psutil.wait_procs(
            [p for p, line in children.items() if "resource_tracker" not in line], timeout=20)
        print("left behind:", [children[p][:80] for p in alive])
""")


@forces_fallback("fork as the default start method")
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_functions_lambdas_and_classes_of_main_work_with_every_start_method(method, tmp_path):
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), method], capture_output=True,
                          text=True, timeout=180, cwd=tmp_path)
    assert done.stdout.splitlines() == [
        "[10, 11, 12, 13]", "[0, 2, 4, 6]", "raised Odd item 1 is odd", "left behind: []",
    ], done.stderr
