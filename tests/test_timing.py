"""The -t summary and its advice, on records built to need it and on real
workloads that show each pitfall."""

import hashlib
import threading
import time

import pytest
from platforms import needs_linux

import parmagic
from parmagic import run
from parmagic.runs import timing
from parmagic.runs.report import ParmapRecord
from parmagic.runs.timing import LoadSampler, Timing


def record_of(wall, spans, n_jobs=2, backend="loky", busy_threads=2):
    """A finished record whose workers reported ``spans`` of
    (wall seconds, CPU seconds, n items)."""
    record = ParmapRecord("work", backend, n_jobs)
    record.load_samples = [busy_threads] * 5
    for number, (seconds, cpu, n_items) in enumerate(spans):
        record.add_span(((1, number % n_jobs), 0.0, seconds, cpu), n_items)
        record.n_finished += n_items
    record.wall_time = wall
    return record


def test_cpu_bound_run_that_scales_needs_no_advice():
    timing = Timing(record_of(1.0, [(1.0, 0.98, 4), (0.97, 0.95, 4)]), cores=2)
    assert timing.hints() == []
    assert timing.speedup == pytest.approx(1.97)
    assert "1.97x with 2 workers" in str(timing)


def test_waiting_items_suggest_threads_or_fewer_jobs():
    (hint,) = Timing(record_of(1.0, [(1.0, 0.02, 4), (1.0, 0.01, 4)]), cores=2).hints()
    assert "only 2% of their run time" in hint and "-b threading" in hint
    (hint,) = Timing(record_of(1.0, [(1.0, 0.02, 4)] * 2, backend="threading"),
                     cores=2).hints()
    assert "More threads (-n)" in hint


def test_items_shorter_than_their_dispatch_suggest_serial_or_batches():
    (hint,) = Timing(record_of(0.01, [(0.001, 0.001, 500)] * 2), cores=2).hints()
    assert "costs more than it saves" in hint
    assert "-b sequential" in hint and "--batch-size" in hint


def test_more_busy_threads_than_cores_are_called_out():
    record = record_of(1.0, [(1.0, 1.0, 2), (1.0, 1.0, 2)], busy_threads=6)
    (hint,) = Timing(record, cores=2).hints()
    assert "About 6 threads were busy on 2 cores" in hint
    assert "BLAS" in hint and "fewer jobs" in hint


def with_startup(record, seconds, started, kept=True, stopped=0):
    record.startup = timing.WorkerStartup(seconds, started, stopped, kept)
    return record


def test_worker_start_up_has_its_own_line_and_is_not_dispatch_overhead():
    record = with_startup(record_of(0.413, [(0.002, 0.002, 4), (0.002, 0.002, 4)]),
                          0.400, 2)
    text = str(Timing(record, cores=2))
    assert "  worker start-up    400.0 ms (2 workers started)\n" in text
    assert "  dispatch overhead  11.0 ms (1.4 ms per item)" in text
    assert text.index("worker start-up") < text.index("dispatch overhead")


def test_start_up_that_dominated_says_the_next_call_reuses_the_workers():
    record = with_startup(record_of(0.413, [(0.002, 0.002, 4), (0.002, 0.002, 4)]),
                          0.400, 2)
    hints = Timing(record, cores=2).hints()
    assert hints[0] == ("Most of the overhead was starting 2 workers (400.0 ms); "
                        "the next call reuses them.")
    # once the workers were up, handing out tiny items still cost more
    assert "less than the 13.0 ms the run took once its workers were up" in hints[1]


def test_workers_that_stop_with_the_run_are_not_promised_to_the_next_call():
    record = with_startup(record_of(1.0, [(0.5, 0.5, 4)] * 2), 0.5, 3, kept=False)
    (hint,) = Timing(record, cores=2).hints()
    assert "starting and stopping 3 workers (500.0 ms): workers beyond" in hint
    assert "reuses" not in hint


def test_short_or_minor_start_up_gets_no_hint():
    spans = [(1.0, 1.0, 4), (1.0, 1.0, 4)]
    assert Timing(with_startup(record_of(1.02, spans), 0.01, 2), cores=2).hints() == []
    slow = with_startup(record_of(3.0, [(0.5, 0.5, 4)] * 2), 0.2, 2)
    assert not any("starting" in hint for hint in Timing(slow, cores=2).hints())


def test_a_resize_that_only_stopped_workers_says_so():
    record = with_startup(record_of(1.0, [(1.0, 1.0, 4)] * 2), 0.03, 0, stopped=6)
    assert "worker start-up    30.0 ms (6 workers stopped)" in str(Timing(record))
    record.startup = timing.WorkerStartup(0.5, 3, 3, kept=False)
    assert "worker start-up    500.0 ms (3 workers started, 3 stopped)" in str(Timing(record))


def test_start_up_lasts_until_the_last_new_worker_began_its_first_task():
    from parmagic.engine.loky_pool import PoolStart

    spans = [((11, 1), 100.4, 0.1), ((12, 1), 100.6, 0.1), ((12, 1), 100.7, 0.1),
             ((13, 1), 100.2, 0.1)]  # 13 was warm already
    starts = [PoolStart(100.0, 0.05, 2, frozenset({11, 12}))]
    startup = timing.worker_startup(starts, spans)
    assert startup.seconds == pytest.approx(0.6)
    assert (startup.started, startup.kept) == (2, True)
    assert timing.worker_startup([PoolStart(100.0, 0.001, 0)], spans) is None


def test_the_first_call_on_a_fresh_pool_reports_its_start_up():
    parmagic.shutdown_workers()
    first = run(abs, [range(8)], n_jobs=2, progress=False)
    assert first.startup.started == 2
    assert "2 workers started" in str(first.timing())
    again = run(abs, [range(8)], n_jobs=2, progress=False)
    assert again.startup is None
    assert "worker start-up" not in str(again.timing())


@pytest.fixture
def no_proc_loadavg(monkeypatch, tmp_path):
    """A system without Linux's /proc/loadavg."""
    monkeypatch.setattr(timing, "_PROC_LOADAVG", str(tmp_path / "no-such-file"))


def test_linux_counts_the_threads_running_now_besides_the_caller(monkeypatch, tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 7/412 12345\n")
    monkeypatch.setattr(timing, "_PROC_LOADAVG", str(loadavg))
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    assert timing.busy_threads() == 6  # the running count wins over the average


def test_without_proc_the_load_average_is_used(monkeypatch, no_proc_loadavg):
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (6.0, 3.0, 1.0))
    assert timing.busy_threads() == 6.0
    record = run(nap, [[0.3] * 4], n_jobs=2, batch_size=1, progress=False)
    assert record.load_samples and set(record.load_samples) == {6.0}
    assert any("About 6 threads were busy on 2 cores" in hint
               for hint in Timing(record, cores=2).hints())


@pytest.mark.parametrize("failure", ["absent", "unobtainable"])
def test_without_any_load_source_there_is_no_sampling_and_no_crowding_hint(
        monkeypatch, no_proc_loadavg, failure):
    if failure == "absent":  # Windows has no os.getloadavg
        monkeypatch.delattr(timing.os, "getloadavg", raising=False)
    else:
        def unobtainable():
            raise OSError("load average unobtainable")
        monkeypatch.setattr(timing.os, "getloadavg", unobtainable)
    assert timing.busy_threads() is None
    sampler = LoadSampler().start()
    assert sampler.started and sampler.stop() == []
    record = run(hash_in_threads, [range(2)], n_jobs=2, progress=False)
    assert record.load_samples == []
    summary = Timing(record, cores=1)
    assert summary.busy_threads is None
    assert not any("threads were busy" in hint for hint in summary.hints())


def nap(seconds):
    time.sleep(seconds)
    return seconds


def hash_in_threads(x):
    data = b"x" * (16 << 20)

    def work():
        for _ in range(4):
            hashlib.sha256(data).digest()  # releases the GIL: threads run in parallel

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return x


def test_real_sleeping_items_get_the_waiting_hint():
    record = run(nap, [[0.2] * 4], n_jobs=2, progress=False)
    assert any("they mostly wait" in hint for hint in record.timing().hints())


@needs_linux("/proc/loadavg's count of threads running now")  # elsewhere a 1-min average
def test_real_threaded_items_get_the_oversubscription_hint():
    record = run(hash_in_threads, [range(4)], n_jobs=2, progress=False)
    assert any("threads were busy on 2 cores" in hint
               for hint in Timing(record, cores=2).hints())


def test_timeline_draws_one_row_per_worker_and_a_bar_per_task():
    import matplotlib

    matplotlib.use("Agg")
    record = run(nap, [[0.05] * 6], n_jobs=2, batch_size=1, progress=False)
    with pytest.warns(UserWarning, match="path="):  # Agg cannot show it
        ax = record.timeline()
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == ["worker 1", "worker 2"]
    assert len(ax.collections) == 6  # one bar per task
    assert "nap: 6 items, 6 tasks, 2 workers" in ax.get_title()


def test_timeline_saves_to_a_path_and_returns_it(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    record = run(nap, [[0.01] * 4], n_jobs=2, progress=False)
    open_before = plt.get_fignums()
    for name in ("timeline.png", "timeline.svg"):
        saved = record.timeline(path=tmp_path / name)
        assert saved == tmp_path / name
        assert saved.stat().st_size > 0
    assert (tmp_path / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert plt.get_fignums() == open_before  # saved, not left open


def test_timeline_where_nothing_can_show_it_says_to_pass_a_path():
    import matplotlib

    matplotlib.use("Agg")
    record = run(nap, [[0.01] * 2], n_jobs=2, progress=False)
    with pytest.warns(UserWarning, match=r"pass path='timeline.png' to save it") as caught:
        ax = record.timeline()
    assert caught[0].filename == __file__  # points at the caller's line
    assert ax.get_title().startswith("nap: 2 items")


def test_timeline_on_an_axes_given_is_left_to_its_owner(recwarn):
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    _, ax = plt.subplots()
    record = run(nap, [[0.01] * 2], n_jobs=2, progress=False)
    assert record.timeline(ax=ax) is ax
    assert not [w for w in recwarn if "timeline" in str(w.message)]
    plt.close(ax.figure)


def test_timeline_without_matplotlib_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    record = run(abs, [[1]], n_jobs=1, progress=False)
    with pytest.raises(ImportError, match=r'pip install "parmagic\[plot\]"'):
        record.timeline()
