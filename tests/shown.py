"""What Python prints for an exception: its traceback, source lines included."""

import traceback


def traceback_text(error):
    """The full text ``traceback`` prints for ``error``."""
    return "".join(traceback.format_exception(error))
