"""Tests that need what only some systems have, marked so the suite skips
them elsewhere and says what is missing, instead of failing or passing
without checking anything.

    @needs_linux("/proc/loadavg")               # facilities only Linux has
    @needs_posix("SIGKILL sent with os.kill")   # any POSIX system (Linux, macOS)
    @forces_fallback("no AF_UNIX")              # the path of a system without it

The marks are ``linux`` and ``posix`` (registered in conftest.py), so
``pytest -m "not linux and not posix"`` selects the tests that run anywhere.
"""

import os
import sys

import pytest

ON_LINUX = sys.platform.startswith("linux")
ON_POSIX = os.name == "posix"


def needs_linux(facility):
    """Mark a test (or a ``pytest.param``) that needs ``facility``, which
    only Linux has."""
    return pytest.mark.linux(facility)


def needs_posix(facility):
    """Mark a test (or a ``pytest.param``) that needs ``facility``, which
    POSIX systems have and Windows has not."""
    return pytest.mark.posix(facility)


def forces_fallback(what):
    """Mark a test that takes, on Linux, the path parmagic takes where
    ``what`` is missing (no AF_UNIX, no SIGALRM...): so the suite says which
    of the other systems' paths it has run here."""
    return pytest.mark.fallback(what)


def missing_facility(item):
    """Why the test ``item`` cannot run on this system, or None."""
    if not ON_LINUX:
        for marker in item.iter_markers("linux"):
            return f"needs {marker.args[0]}, which only Linux has"
    if not ON_POSIX:
        for marker in item.iter_markers("posix"):
            return f"needs {marker.args[0]}, which only POSIX systems have"
    return None
