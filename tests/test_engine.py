"""The engine without IPython: parmagic.pmap / parmagic.run."""

import functools
import glob
import os
import subprocess
import sys
import textwrap
import time

import joblib
import numpy as np
import pytest

from shown import traceback_text

import parmagic
from parmagic import NOT_COMPUTED, ParmagicInputError, pmap, run
from parmagic.engine import chunked

from platforms import needs_linux
from processes import stop_workers_and_wait, worker_processes

BACKENDS = ["loky", "threading", "multiprocessing", "sequential"]


def square(x):
    return x * x


def reciprocal(x):
    return 1 / x


class Point:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, Point) and other.x == self.x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_jobs", [1, 2, -1])
def test_results_are_in_input_order(backend, n_jobs):
    assert pmap(square, range(50), n_jobs=n_jobs, backend=backend) == [
        i * i for i in range(50)
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_iterables_are_zipped_like_map(backend):
    assert pmap(pow, range(5), [2] * 7, n_jobs=2, backend=backend) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_star_unpacks_each_item(backend):
    pairs = [(2, 3), (3, 2), (10, 0)]
    assert pmap(pow, pairs, star=True, n_jobs=2, backend=backend) == [8, 9, 1]


def test_lambdas_closures_and_classes_travel_to_worker_processes():
    offset = 10
    assert pmap(lambda x: x + offset, range(3), n_jobs=2) == [10, 11, 12]
    points = pmap(Point, range(3), n_jobs=2)
    assert points == [Point(0), Point(1), Point(2)]
    assert pmap(lambda p: p.x * 2, points, n_jobs=2) == [0, 2, 4]


@pytest.mark.parametrize("batch_size", [1, 3, 1000, "auto"])
def test_batch_size_does_not_change_results(batch_size):
    assert pmap(square, range(23), n_jobs=2, batch_size=batch_size) == [
        i * i for i in range(23)
    ]


def test_empty_input_returns_empty_list_without_starting_workers():
    assert not stop_workers_and_wait()
    assert pmap(square, [], n_jobs=2) == []
    assert pmap(square, iter(()), n_jobs=2) == []
    assert worker_processes() == []


@pytest.mark.parametrize("backend, total", [("loky", 200_000), ("threading", 40_000)])
def test_generators_are_read_lazily_with_bounded_read_ahead(backend, total):
    leads = []

    def on_start(record):
        nonlocal current
        current = record

    current = None

    def numbers():
        for i in range(total):
            leads.append(i - current.n_finished)
            yield i

    record = run(square, [numbers()], n_jobs=2, backend=backend, on_start=on_start)
    assert record.results[-1] == (total - 1) ** 2
    assert len(record.results) == total
    # never more than the chunks in flight (loky) or joblib's pre-dispatch
    # ahead of the workers
    ahead = chunked._IN_FLIGHT_PER_WORKER * 2 * chunked._MAX_CHUNK if backend == "loky" else 2000
    assert max(leads) <= ahead < total // 10


def test_failing_item_raises_original_exception_with_a_note_and_keeps_results():
    records = []
    with pytest.raises(ZeroDivisionError) as info:
        run(reciprocal, [[1, 2, 0, 4]], n_jobs=2, batch_size=1, on_start=records.append)
    note = "\n".join(info.value.__notes__)
    assert "item 2 (0)" in note
    assert "results had finished" in note
    assert "return 1 / x" in traceback_text(info.value)  # the worker's traceback
    record = records[0]
    assert record.status == "failed"
    assert list(record.errors) == [2]
    assert isinstance(record.errors[2].exception, ZeroDivisionError)
    assert record.results[2] is NOT_COMPUTED
    # whatever else finished before the failure arrived is kept, in its slot
    expected = [1.0, 0.5, None, 0.25]
    for index, value in enumerate(record.results):
        assert value is NOT_COMPUTED or value == expected[index]
    assert f"{record.n_finished} of 4 results had finished" in note


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_failures_are_attributed_to_items_on_every_backend(backend):
    with pytest.raises(ZeroDivisionError) as info:
        pmap(reciprocal, [1, 0], n_jobs=2, backend=backend)
    assert "item 1 (0)" in "\n".join(info.value.__notes__)


def test_record_describes_the_run():
    records = []
    run(square, [range(4)], n_jobs=2, backend="threading", on_start=records.append)
    record = records[0]
    assert record.results == [0, 1, 4, 9]
    assert (record.backend, record.n_jobs, record.status) == ("threading", 2, "done")
    assert record.wall_time > 0
    assert "4 finished" in repr(record)
    assert "threading" in record._repr_html_()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pmap(5, [1]), "not callable"),
        (lambda: pmap(square), "at least one iterable"),
        (lambda: pmap(square, 5), "not iterable"),
        (lambda: pmap(square, [1], n_jobs=0), "n_jobs=0"),
        (lambda: pmap(square, [1], n_jobs="two"), "whole number"),
        (lambda: pmap(square, [1], n_jobs=True), "whole number"),
        (lambda: pmap(square, [1], backend="nope"), "expected one of"),
        (lambda: pmap(square, [1], batch_size=0), "batch_size"),
        (lambda: pmap(pow, [1], [2], star=True), "star=True"),
        (lambda: pmap(square, [1], on_error="ignore"), "on_error must be 'raise' or 'collect'"),
        (lambda: pmap(square, [1], timeout=0), "timeout must be a positive number"),
        (lambda: pmap(square, [1], timeout="1"), "timeout must be a positive number"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ParmagicInputError, match=message):
        call()


def test_enclosing_parallel_config_is_respected():
    with joblib.parallel_config(backend="threading", n_jobs=3):
        records = []
        run(square, [range(3)], on_start=records.append)
    assert (records[0].backend, records[0].n_jobs) == ("threading", 3)


def test_a_parallel_config_between_runs_with_the_same_options_is_respected():
    # (runs on loky keep their joblib.Parallel for the next run with the same
    # options: a parallel_config in between must still count)
    def backend_of_a_run():
        records = []
        run(square, [range(3)], n_jobs=2, on_start=records.append)
        return records[0].backend

    assert backend_of_a_run() == backend_of_a_run() == "loky"
    with joblib.parallel_config(backend="threading"):
        assert backend_of_a_run() == "threading"
    assert backend_of_a_run() == "loky"


def test_default_is_loky_on_all_cores():
    records = []
    run(square, [range(3)], on_start=records.append)
    assert (records[0].backend, records[0].n_jobs) == ("loky", joblib.cpu_count())


def _files_in(pattern):
    """Files in the folders named ``pattern`` in /dev/shm and the temporary
    folder (where the shared store and joblib's memmapping put theirs)."""
    import glob
    import tempfile

    return [path for root in ("/dev/shm", tempfile.gettempdir())
            for folder in glob.glob(os.path.join(root, pattern))
            for path in glob.glob(os.path.join(folder, "*"))]


@needs_linux("the store's folder in /dev/shm or the temporary folder (the places checked)")
def test_pmap_and_joblib_parallel_alternate_with_large_arrays():
    arrays = [np.full(1_000_000, float(i)) for i in range(4)]  # 8 MB each
    expected = [a.sum() for a in arrays]
    store = f"parmagic_{os.getpid()}_*"
    joblibs = f"joblib_memmapping_folder_{os.getpid()}_*"
    before = set(_files_in(store))
    for _ in range(2):
        assert pmap(np.sum, arrays, n_jobs=2) == expected
        # the four arrays went through parmagic's store, once: the second
        # round finds them there
        assert len(set(_files_in(store)) - before) == 4
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(np.sum)(a) for a in arrays) == expected
        assert not _files_in(joblibs)  # joblib's own pool cleans up after itself


def test_no_temp_folder_is_left_after_the_session(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, joblib, numpy as np
        from parmagic import pmap
        arrays = [np.ones(1_000_000) for _ in range(4)]
        for _ in range(3):
            pmap(np.sum, arrays, n_jobs=2)
            joblib.Parallel(n_jobs=2)(joblib.delayed(np.sum)(a) for a in arrays)
        print(os.getpid())
        """
    )
    # joblib's memmapping and parmagic's socket folders would be left here
    env = {**os.environ, "JOBLIB_TEMP_FOLDER": str(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    pid = done.stdout.split()[-1]  # nor the shared-memory store's folder
    assert glob.glob(f"/dev/shm/parmagic_{pid}_*") == []


def test_shutdown_workers_stops_the_pool_and_the_next_call_restarts_it():
    pmap(square, range(4), n_jobs=2)
    assert not stop_workers_and_wait()
    assert worker_processes() == []
    assert pmap(square, range(4), n_jobs=2) == [0, 1, 4, 9]


def test_public_api_is_curated():
    assert set(parmagic.__all__) >= {"pmap", "run", "ParmapRecord", "shutdown_workers"}
    assert all(hasattr(parmagic, name) for name in parmagic.__all__)


def test_order_holds_when_items_finish_out_of_order(tmp_path):
    # the first item finishes last; the list is still in input order
    last_done = str(tmp_path / "last-done")
    first_waits = functools.partial(_finish_after_the_last, last=5, last_done=last_done)
    assert pmap(first_waits, range(6), n_jobs=2, batch_size=1) == list(range(6))


def _finish_after_the_last(x, last, last_done):
    """Item 0 waits until item ``last`` has written ``last_done``."""
    if x == last:
        open(last_done, "w").close()
    if x == 0:
        ends = time.monotonic() + 30
        while not os.path.exists(last_done):
            if time.monotonic() > ends:
                raise TimeoutError(f"item {last} never finished")
            time.sleep(0.01)
    return x
