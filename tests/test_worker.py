"""What a worker process keeps between the chunks of a run."""

import warnings

import pytest
from cells import notebook_cell

from parmagic import GlobalMutationWarning, pmap

COUNTER = """
    import os
    calls = 0
    def count(i):
        global calls
        calls += 1
        return os.getpid(), calls
"""


def test_a_workers_globals_live_on_between_its_items_of_a_run_and_start_afresh_in_the_next():
    count = notebook_cell(COUNTER)["count"]
    for _ in range(2):  # the second run starts from the notebook's value again
        with pytest.warns(GlobalMutationWarning, match="calls"):
            results = pmap(count, range(8), n_jobs=2, batch_size=1)
        by_worker = {}
        for pid, calls in results:
            by_worker.setdefault(pid, []).append(calls)
        for seen in by_worker.values():  # one item per chunk, counted on
            assert sorted(seen) == list(range(1, len(seen) + 1))
    assert count.__globals__["calls"] == 0


SELF_CHANGING = {
    "a global rebound": COUNTER,
    "a global added through globals()": """
        import os
        def count(i):
            globals()["calls"] = globals().get("calls", 0) + 1
            return os.getpid(), globals()["calls"]
    """,
    "a global assigned that did not exist": """
        import os
        def count(i):
            global calls
            try:
                calls += 1
            except NameError:
                calls = 1
            return os.getpid(), calls
    """,
}


@pytest.mark.parametrize("case", SELF_CHANGING)
def test_a_function_whose_run_changed_its_globals_is_not_used_again(case):
    # the notebook sends the very same pickle again (nothing in it changed
    # there); the worker must still start from it, not from what it kept
    count = notebook_cell(SELF_CHANGING[case])["count"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GlobalMutationWarning)
        for _ in range(3):
            by_worker = {}
            for pid, calls in pmap(count, range(6), n_jobs=2):
                by_worker.setdefault(pid, []).append(calls)
            for seen in by_worker.values():
                assert sorted(seen) == list(range(1, len(seen) + 1))


def test_an_unchanged_function_is_not_unpickled_again_by_its_worker():
    namespace = notebook_cell("""
        import os, sys
        LIMIT = 10
        def code_here(i):
            return os.getpid(), id(sys._getframe().f_code) if i < LIMIT else None
    """)
    func = namespace["code_here"]
    seen = [dict(pmap(func, range(4), n_jobs=2)) for _ in range(3)]
    reused = [pid for pid in seen[1] if seen[2].get(pid) == seen[1][pid]]
    assert reused  # a worker that ran both calls ran the same code object
    namespace["LIMIT"] = 0  # changed in the notebook: a new pickle, unpickled afresh
    assert {code for _, code in pmap(func, range(4), n_jobs=2)} == {None}


@pytest.mark.parametrize("changed_at", [0, 3, 7])
def test_a_change_in_any_chunk_is_found_and_none_is_made_up(changed_at):
    # (a worker with the run's next chunk already there fingerprints the
    # globals after that one instead: the change must still show)
    cell = notebook_cell(f"""
        import operator
        SEEN = {{"last": None}}
        def late_change(i):
            if i == {changed_at}:  # a change the source check does not see
                operator.setitem(SEEN, "last", i)
            return i
        def reads_only(i):
            return SEEN["last"], i
    """)
    with pytest.warns(GlobalMutationWarning, match="SEEN"):
        assert pmap(cell["late_change"], range(8), n_jobs=2, batch_size=1) == list(range(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GlobalMutationWarning)
        assert pmap(cell["reads_only"], range(8), n_jobs=2, batch_size=1) == [
            (None, i) for i in range(8)]


def kept_in_this_worker(_):
    from parmagic.worker import kept_runs, setup as worker_setup

    return len(kept_runs._kept) + len(worker_setup._shipped)


def test_a_worker_lets_go_of_a_run_once_it_is_over():
    from joblib import Parallel

    from parmagic.engine.loky_pool import LokyPool
    from parmagic.worker.chunk import Chunk

    cell = notebook_cell("""
        BIG_LIST = list(range(200_000))  # pickled with the function, not shared
        def load():
            global LOADED
            LOADED = True
        def total(i):
            return sum(BIG_LIST) + i
    """)
    assert pmap(cell["total"], range(4), n_jobs=2) == [sum(range(200_000)) + i for i in range(4)]
    assert pmap(cell["total"], range(4), n_jobs=2, init=cell["load"])[0] == sum(range(200_000))
    pool = LokyPool(Parallel(n_jobs=2, backend="loky"))  # the same warm workers
    try:
        probes = [pool.submit(Chunk(kept_in_this_worker, [(i, (i,))])) for i in range(2)]
        assert [probe.result(timeout=60).values for probe in probes] == [[0], [0]]
    finally:
        pool.close()
