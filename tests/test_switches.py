"""Every acceleration can be switched off (``parmagic.switches``, or
``%config ParMagic.<name>``), and a run with it off gives what the serial
loop gives, the slower way: each test shows the plain way was taken."""

import os

import numpy as np
import pytest
from platforms import needs_linux

from parmagic import ParmagicInputError, WorkerCrashError, pmap, run, shutdown_workers, switches
from parmagic.common.switches import Switches
from parmagic.data import shared_data
from parmagic.worker import function_pickles, kept_runs

BIG = np.arange(2**18, dtype=np.float64)  # 2 MB: over the shared store's threshold


@pytest.fixture(autouse=True)
def all_switches_on_after():
    yield
    for name in Switches.EFFECTS:
        setattr(switches, name, True)
    shutdown_workers()  # workers started with a switch off go


def reads_big(i):
    print("item", i)
    return float(BIG[i * 1000]) + i


def crash_on_one(x):
    if x == 1:
        os._exit(3)
    return x


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(Switches.EFFECTS))
def test_a_run_with_a_switch_off_gives_what_the_serial_loop_gives(name):
    setattr(switches, name, False)
    for _ in range(3):  # the first run, and those that reuse what it left
        assert pmap(reads_big, range(8), n_jobs=2) == [reads_big(i) for i in range(8)]


def worker_modules(prefix):
    code = f"[m for m in __import__('sys').modules if m.startswith({prefix!r})]"
    return pmap(eval, [code] * 2, n_jobs=2)


@pytest.mark.timeout(120)
def test_without_direct_channels_chunks_go_through_loky_and_crashes_are_named():
    switches.direct_channels = False
    shutdown_workers()
    assert worker_modules("parmagic.transport") == [[], []]  # no channel served
    with pytest.raises(WorkerCrashError, match="EXIT"):
        pmap(crash_on_one, range(4), n_jobs=2)
    assert pmap(abs, [-1, -2], n_jobs=2) == [1, 2]  # a fresh pool after the crash
    with pytest.raises(ParmagicInputError, match="direct_channels"):
        pmap(abs, range(4), n_jobs=2, max_tasks_per_worker=1)


@pytest.mark.timeout(120)
def test_with_direct_channels_the_workers_serve_them():
    shutdown_workers()
    assert worker_modules("parmagic.transport.worker_channel") == [
        ["parmagic.transport.worker_channel"]] * 2


@pytest.mark.timeout(120)
def test_without_capture_output_item_output_is_not_kept_per_item(capsys):
    on = run(reads_big, [range(2)], backend="threading", n_jobs=2)
    assert on.outputs == ["item 0\n", "item 1\n"]
    capsys.readouterr()  # (shown in item order once the items ended)
    switches.capture_output = False
    off = run(reads_big, [range(2)], backend="threading", n_jobs=2)
    assert off.outputs == ["", ""]  # printed as it happened, by whichever thread
    assert sorted(capsys.readouterr().out.split("\n")) == ["", "item 0", "item 1"]


@pytest.mark.timeout(120)
def test_without_shared_memory_arrays_are_pickled():
    item = np.ones(2**18)  # a new 2 MB array, never in the store before
    on = run(np.sum, [[item]], n_jobs=2)
    assert on.transfer.shared == item.nbytes and on.transfer.pickled < item.nbytes
    switches.shared_memory = False
    other = item + 1
    off = run(np.sum, [[other]], n_jobs=2)
    assert off.results == [other.sum()]
    assert off.transfer.shared == off.transfer.reused == 0
    assert off.transfer.pickled > other.nbytes


def test_without_write_watch_the_store_hashes_and_never_asks_the_kernel(monkeypatch):
    def no_watch():
        raise AssertionError("the write watch was used")

    monkeypatch.setattr(shared_data.write_watch, "watch", no_watch)
    switches.write_watch = False
    sharing = shared_data.RunSharing(shared_data.store())
    try:
        for _ in range(3):
            sharing.reference(BIG)
            sharing._refs.clear()  # as a new run would
        assert sharing.reused_bytes == 2 * BIG.nbytes
    finally:
        sharing.close()
    switches.write_watch = True
    sharing = shared_data.RunSharing(shared_data.store())
    try:
        with pytest.raises(AssertionError, match="write watch"):
            sharing.reference(BIG)
    finally:
        sharing.close()


def constant_function(x):
    return x + 1


def test_without_pickle_reuse_a_function_is_pickled_and_unpickled_every_run():
    calls = []

    def dumps(func):
        calls.append(func)
        return b"pickle %d" % len(calls)

    function_pickles.pickled(constant_function, dumps)
    function_pickles.pickled(constant_function, dumps)
    assert len(calls) == 1  # the kept pickle was sent again
    switches.pickle_reuse = False
    function_pickles.pickled(constant_function, dumps)
    assert len(calls) == 2
    # in a worker: the last run's function is used again only with reuse
    import cloudpickle

    namespace = {"__name__": "__main__"}  # a notebook's: pickled by value
    exec("def add_one(x):\n    return x + 1\n", namespace)
    data = cloudpickle.dumps(namespace["add_one"])
    first = kept_runs.kept_for("run 1", data)
    kept_runs.forget_runs()
    assert kept_runs.kept_for("run 2", data).func is first.func
    kept_runs.forget_runs()
    assert kept_runs.kept_for("run 3", data, reuse=False).func is not first.func
    kept_runs.forget_runs()


@needs_linux("SCHED_BATCH")
@pytest.mark.timeout(120)
def test_without_batch_scheduling_workers_keep_the_normal_policy():
    policy = "__import__('os').sched_getscheduler(0)"
    shutdown_workers()
    assert pmap(eval, [policy] * 2, n_jobs=2) == [os.SCHED_BATCH] * 2
    switches.batch_scheduling = False
    assert pmap(eval, [policy] * 2, n_jobs=2) == [os.SCHED_OTHER] * 2  # a new pool
    assert pmap(eval, [policy] * 2, n_jobs=2, backend="multiprocessing") == [os.SCHED_OTHER] * 2


def test_a_switch_is_named_and_is_true_or_false():
    with pytest.raises(AttributeError, match="no switch 'shared_mem'.*shared_memory"):
        switches.shared_mem = False
    with pytest.raises(TypeError, match="True or False"):
        switches.shared_memory = 0
    assert switches.shared_memory is True


def test_config_sets_the_switches(shell):
    shell.run_line_magic("config", "ParMagic.direct_channels = False")
    assert switches.direct_channels is False
    shell.run_line_magic("config", "ParMagic.direct_channels = True")
    assert switches.direct_channels is True
    help_text = shell.run_line_magic("config", "ParMagic") or ""
    del help_text  # %config ParMagic prints the traits: each switch is one
    assert set(Switches.EFFECTS) <= set(shell.magics_manager.registry["ParMagic"].traits())


def test_the_switches_are_listed_in_the_readme():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    missing = [name for name in ("warm_pool", *Switches.EFFECTS) if f"| `{name}` |" not in readme]
    assert not missing, f"README does not list {missing}"


