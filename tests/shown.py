"""Reading the failures a user is shown: Python's traceback text, and
checks that a parallel failure reads like a serial one."""

import traceback

# What a failure must not show: frames of parmagic, joblib, loky, the
# standard library's pools and threads and IPython itself, and the old
# two-part "remote traceback, then the direct cause" shape.
MACHINERY = ("parmagic/", "joblib", "loky", "concurrent", "threading.py", "queue.py",
             "selectors.py", "interactiveshell.py", "site-packages", "skipping hidden",
             "RemoteTraceback", "direct cause", "During handling")


def traceback_text(error):
    """The full text ``traceback`` prints for ``error``."""
    return "".join(traceback.format_exception(error))


def assert_no_machinery(text):
    for internal in MACHINERY:
        assert internal not in text, f"{internal!r} shown:\n{text}"


def in_order(text, *parts):
    """Each of ``parts`` is in ``text``, one after the other."""
    position = 0
    for part in parts:
        found = text.find(part, position)
        assert found >= 0, f"{part!r} not found after position {position} in:\n{text}"
        position = found + len(part)
