"""Log records of items that run in worker processes, kept with the item's
output and handed to the notebook's own loggers.

A worker process has none of the notebook's logging set-up: an item's
``logging.info(...)`` would go nowhere there, and a warning to the worker's
bare last-resort handler. So while a chunk runs in a worker process, a
handler on its root logger keeps each record with the item's captured
output (a part of its own, ``capture.LOG``), at the levels the notebook's loggers
have, and the notebook gives the record to its logger of the same name
(``capture.replay``): the notebook's handlers format it, show it or drop
it, as they would have in a serial loop.
"""

import logging

from parmagic.worker import capture

_PLAIN = (str, int, float, bool, type(None))


def notebook_levels():
    """The levels set on this process's loggers, root first: what a worker
    sets on its own so that it logs what the notebook would."""
    levels = [("", logging.root.level)]
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels.append((name, logger.level))
    return tuple(levels)


class _ItemRecords(logging.Handler):
    """Puts each record with the output of the item that logged it."""

    def emit(self, record):
        target = capture.current_item()
        if target is None:  # not an item's (the worker's own): as before
            if record.levelno >= logging.lastResort.level:
                logging.lastResort.handle(record)
            return
        outputs, index = target
        parts = outputs.get(index)
        if parts is None:
            parts = outputs[index] = []
        parts.append((capture.LOG, _portable(record)))


_handler = None
_levels = ()  # the notebook's levels this worker took on last


def keep_records(levels):
    """In a worker process: keep its items' records from now on, at the
    notebook's ``levels`` (``notebook_levels``)."""
    global _handler, _levels
    if _handler is None:
        _handler = _ItemRecords()
        logging.root.addHandler(_handler)
    if levels == _levels:
        return
    for name, _ in _levels:  # levels the notebook no longer sets
        if name:
            logging.getLogger(name).setLevel(logging.NOTSET)
    for name, level in levels:
        logging.getLogger(name or None).setLevel(level)
    _levels = levels


def _portable(record):
    """A copy of ``record`` that pickles and means the same in the
    notebook: its message formatted, its traceback as text, and anything
    given through ``extra`` that is not plain data as its repr."""
    portable = logging.makeLogRecord({
        name: value if isinstance(value, _PLAIN) else repr(value)
        for name, value in record.__dict__.items()
        if name not in ("msg", "args", "exc_info")
    })
    portable.msg, portable.args = record.getMessage(), None
    if record.exc_info and not record.exc_text:
        portable.exc_text = logging.Formatter().formatException(record.exc_info)
    return portable
