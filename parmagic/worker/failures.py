"""What a worker reports for an item that raised: the exception (or
parmagic's error for a time limit or ``sys.exit``) and its frames."""

from parmagic.common.errors import ItemExitError, ItemTimeoutError
from parmagic.worker import time_limits
from parmagic.worker.time_limits import TimeLimitReached
from parmagic.worker.tracebacks import frames_of


def item_failure(exc, options):
    """(exception, traceback frames) for an item that raised ``exc``; the
    exception is packed in ``Batch.__reduce__``."""
    if isinstance(exc, SystemExit):
        return ItemExitError(f"the item called sys.exit({exc.code!r})"), frames_of(exc)
    if isinstance(exc, TimeLimitReached) and options.timeout is not None:
        error = ItemTimeoutError(
            f"the item ran longer than its {options.timeout:g} s time limit")
        frames = frames_of(exc)
        while frames and frames[-1][0] == time_limits.__file__:  # the alarm's handler
            frames.pop()
        return error, frames
    return exc, frames_of(exc)
