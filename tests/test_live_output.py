"""What a running item prints reaches the notebook while it runs (loky's
pools), and still reads as a serial loop's output: per item, in item order,
nothing twice."""

import functools
import os
import pickle
import sys
import threading
import time

import pytest

from parmagic import run
from parmagic.common.errors import WorkerCrashError
from parmagic.engine.ordered_output import OrderedOutput
from parmagic.worker.capture import Sink
from parmagic.worker.live_output import LiveOutput, News, unpickled


class Watching:
    """``sys.stdout`` for a test: keeps what is written, and creates the
    file ``release`` once ``awaited`` has been written. An item waiting
    for that file is released only if its output came before it ended."""

    def __init__(self, awaited, release):
        self.awaited = awaited
        self.release = release
        self.written = []

    def write(self, text):
        self.written.append(text)
        if self.awaited in self.text():
            self.release.touch()
        return len(text)

    def flush(self):
        pass

    def text(self):
        return "".join(self.written)


def waits_for(release, x, waits=(0,)):
    """Says it started, and for the items ``waits`` waits (at most 30 s)
    for the file ``release``: its answer says whether it came."""
    print(f"working on {x}", flush=True)
    answer = "released"
    if x in waits:
        deadline = time.monotonic() + 30
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                answer = "not released"
                break
            time.sleep(0.01)
    print(f"finished {x}")
    return answer


@pytest.fixture
def release(tmp_path):
    return tmp_path / "release"


@pytest.mark.timeout(120)
def test_a_running_item_is_heard_before_it_ends(release, monkeypatch):
    shown = Watching("working on 0", release)
    monkeypatch.setattr(sys, "stdout", shown)
    record = run(functools.partial(waits_for, str(release)), [range(3)], n_jobs=2,
                 batch_size=1, progress=False)
    assert record.results == ["released"] * 3
    serial = "".join(f"working on {x}\nfinished {x}\n" for x in range(3))
    assert shown.text() == serial  # in item order, nothing shown twice
    assert "".join(record.outputs) == serial


@pytest.mark.timeout(120)
def test_an_item_after_one_that_ended_in_the_same_chunk_is_heard(release, monkeypatch):
    # one chunk of two: the first ends at once, the second waits; the chunk's
    # result (which says the first ended) comes only once the second is released
    shown = Watching("working on 1", release)
    monkeypatch.setattr(sys, "stdout", shown)
    record = run(functools.partial(waits_for, str(release), waits=(1,)), [range(2)],
                 n_jobs=2, batch_size=2, progress=False)
    assert record.results == ["released"] * 2
    assert shown.text() == "working on 0\nfinished 0\nworking on 1\nfinished 1\n"


def prints_then_dies(release, x):
    print(f"about to die on {x}", flush=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(3)


@pytest.mark.timeout(120)
def test_what_an_item_printed_before_its_worker_died_is_kept(release, monkeypatch):
    shown = Watching("about to die on 0", release)
    monkeypatch.setattr(sys, "stdout", shown)
    records = []
    with pytest.raises(WorkerCrashError):
        run(functools.partial(prints_then_dies, str(release)), [[0]], n_jobs=2,
            on_start=records.append, progress=False)
    assert shown.text() == "about to die on 0\n"
    assert records[0].outputs == ["about to die on 0\n"]
    assert run(abs, [[-2]], n_jobs=2, progress=False).results == [2]


def test_on_the_threading_backend_output_still_reads_as_a_serial_loop(capsys):
    # (not live there: each item's output comes with its result)
    record = run(functools.partial(waits_for, "unused", waits=()), [range(3)],
                 n_jobs=2, backend="threading", progress=False)
    serial = "".join(f"working on {x}\nfinished {x}\n" for x in range(3))
    assert capsys.readouterr().out == serial
    assert "".join(record.outputs) == serial


class Finished:
    """The part of the run record ``OrderedOutput`` reads."""

    def __init__(self):
        self.indices = set()

    def is_finished(self, index):
        return index in self.indices


def ordered_output():
    written, record = [], Finished()
    output = OrderedOutput(lambda parts: written.extend(text for _, text in parts), record)
    return output, written, record


def out(*texts):
    return [("stdout", text) for text in texts]


def test_the_first_item_is_written_as_it_comes_the_next_waits_its_turn():
    output, written, record = ordered_output()
    output.live(News([(1, out("b1 "))], ()))
    assert written == []  # item 0 has not ended
    output.live(News([(0, out("a1 "))], ()))
    assert written == ["a1 "]
    output.add(0, out("a1 ", "a2 "))  # the chunk's result: only the rest is new
    record.indices.add(0)
    output.flush_ready()
    assert written == ["a1 ", "a2 ", "b1 "]
    output.add(1, out("b1 ", "b2 "))
    record.indices.add(1)
    output.flush_ready()
    assert written == ["a1 ", "a2 ", "b1 ", "b2 "]
    assert output.unended() == {}


def test_an_item_said_ended_gives_the_next_its_turn_before_its_result_comes():
    output, written, record = ordered_output()
    output.live(News([(0, out("a "))], ()))
    output.live(News([(1, out("b "))], range(0, 1)))  # 0 ended: its output was all sent
    assert written == ["a ", "b "]
    output.add(0, out("a "))  # its result, later: nothing more to write
    output.add(1, out("b ", "c "))
    record.indices.update({0, 1})
    output.flush_ready()
    assert written == ["a ", "b ", "c "]
    assert output.waiting == {} and output.early == {}


def test_an_item_that_runs_again_starts_afresh_and_one_that_died_is_kept():
    output, written, record = ordered_output()
    output.live(News([(0, out("try 1 "))], ()))
    output.forget(0)  # it failed and runs again
    output.add(0, out("try 2 "))
    record.indices.add(0)
    output.flush_ready()
    assert written == ["try 1 ", "try 2 "]
    output.live(News([(1, out("dying "))], ()))
    record.indices.add(1)  # its worker died: no result brings its output
    output.flush_all()
    assert written == ["try 1 ", "try 2 ", "dying "]
    assert output.unended() == {1: out("dying ")}


class Connection:
    """What ``LiveOutput`` sends, and an event for each message."""

    def __init__(self):
        self.messages = []
        self.arrived = threading.Condition()

    def send_bytes(self, data):
        with self.arrived:
            self.messages.append(data)
            self.arrived.notify_all()

    def wait_for(self, condition, seconds=10):
        with self.arrived:
            assert self.arrived.wait_for(lambda: condition(self.messages), seconds), \
                self.messages


def news_in(messages):
    return [unpickled(message) for message in messages if unpickled(message) is not None]


def merged(messages):
    """All the news in ``messages`` as one: index -> parts, and the ended."""
    parts, ended = {}, []
    for news in news_in(messages):
        for index, new in news.parts:
            parts.setdefault(index, []).extend(new)
        ended.extend(news.ended)
    return parts, ended


def test_a_worker_sends_a_running_chunks_new_output_and_nothing_after_its_end():
    connection = Connection()
    live = LiveOutput(connection.send_bytes)
    try:
        outputs, sink = {}, Sink({})
        live.watch(outputs, [(0, ()), (1, ())], sink)
        sink.index = 0
        outputs[0] = out("a ")
        connection.wait_for(lambda messages: merged(messages) == ({0: out("a ")}, []))
        sink.index = 1  # item 0 ended
        outputs[1] = out("b ")
        connection.wait_for(
            lambda messages: merged(messages) == ({0: out("a "), 1: out("b ")}, [0]))
        live.send(b"the chunk's result")
        outputs[1].append(("stdout", "after the end "))
        live.watch({2: out("next ")}, [(2, ())], Sink({}))  # the next chunk
        connection.wait_for(lambda messages: 2 in merged(messages)[0])
        after_end = connection.messages[connection.messages.index(b"the chunk's result") + 1:]
        assert merged(after_end) == ({2: out("next ")}, [])
    finally:
        live.close()


def test_news_that_does_not_load_is_empty_and_a_result_is_not_news():
    assert unpickled(b"L" + b"not a pickle") == News([], ())
    assert unpickled(pickle.dumps([1, 2])) is None
