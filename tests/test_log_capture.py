"""``logging`` in items that run in worker processes: each record is kept
with its item's output and given to the notebook's logger of its name, at
the levels the notebook's loggers have, as a serial loop would log it."""

import logging
import threading

import pytest

from parmagic import run, switches


class Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def kept():
    """A handler on the logger "items", at INFO, as a notebook would set it."""
    logger = logging.getLogger("items")
    handler = Kept()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logging.getLogger("items.chatty").setLevel(logging.NOTSET)


def logs(x):
    print("printed", x)
    logging.getLogger("items").info("item %d", x)
    logging.getLogger("items").debug("not at INFO %d", x)
    logging.getLogger("items.chatty").debug("chatty %d", x)
    return x


def test_records_come_to_the_notebooks_loggers_in_item_order(kept):
    record = run(logs, [range(4)], n_jobs=2, batch_size=1)
    assert [r.getMessage() for r in kept.records] == [f"item {x}" for x in range(4)]
    assert {r.processName for r in kept.records} != {"MainProcess"}  # logged in workers
    assert record.outputs[2] == "printed 2\nINFO:items:item 2\n"


def test_a_level_set_in_the_notebook_is_followed_and_so_is_its_reset(kept):
    logging.getLogger("items.chatty").setLevel(logging.DEBUG)
    run(logs, [[0]], n_jobs=2)
    assert [r.getMessage() for r in kept.records] == ["item 0", "chatty 0"]
    kept.records.clear()
    logging.getLogger("items.chatty").setLevel(logging.NOTSET)
    run(logs, [[1]], n_jobs=2)
    assert [r.getMessage() for r in kept.records] == ["item 1"]


class Opaque:
    def __reduce__(self):
        raise TypeError("not for pickling")


def logs_with_extra(x):
    logging.getLogger("items").info("with %s", Opaque.__name__, extra={"thing": Opaque()})
    try:
        raise KeyError(x)
    except KeyError:
        logging.getLogger("items").exception("failed on %d", x)
    return x


def test_a_record_carrying_what_cannot_be_pickled_still_arrives(kept):
    assert run(logs_with_extra, [[7]], n_jobs=2).results == [7]
    extra, failure = kept.records
    assert extra.getMessage() == "with Opaque" and "Opaque object" in extra.thing
    assert "KeyError: 7" in failure.exc_text


def test_without_output_capture_records_are_not_kept(kept):
    switches.capture_output = False
    try:
        record = run(logs, [[0]], n_jobs=2)
    finally:
        switches.capture_output = True
    assert kept.records == [] and record.outputs == [""]


def test_items_in_the_notebooks_threads_log_there_directly(kept):
    run(logs, [range(2)], backend="threading", n_jobs=2)
    assert sorted(r.getMessage() for r in kept.records) == ["item 0", "item 1"]
    assert {r.thread for r in kept.records} != {threading.main_thread().ident}
