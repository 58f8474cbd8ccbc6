"""Asking about and stopping other processes by pid, on POSIX and Windows.

On Windows ``os.kill(pid, 0)`` does not ask whether a process exists: 0 is
``CTRL_C_EVENT`` there, sent to every process of the console. So Windows
asks its kernel for a handle to the process instead (through ``ctypes``;
psutil does the same, but is not a dependency).
"""

import os
import signal

_SYNCHRONIZE = 0x00100000  # the access right a wait needs
_WAIT_TIMEOUT = 0x102
_INFINITE = 0xFFFFFFFF
_ERROR_ACCESS_DENIED = 5


def alive(pid):
    """Whether a process ``pid`` exists (perhaps another user's)."""
    if os.name == "nt":
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)  # POSIX: no signal is sent, the kernel only checks
    except ProcessLookupError:
        return False
    except OSError:  # exists, but is someone else's
        return True
    return True


def kill(pid):
    """Stop process ``pid`` at once (SIGKILL; TerminateProcess on Windows).
    Returns False if it was gone already."""
    try:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except OSError:
        return False
    return True


def wait_for_exit(pid):
    """Windows: block until process ``pid`` has ended (at once if it has)."""
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(_SYNCHRONIZE, False, pid)
    if not handle:
        return
    try:
        kernel32.WaitForSingleObject(handle, _INFINITE)
    finally:
        kernel32.CloseHandle(handle)


def _windows_alive(pid):
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(_SYNCHRONIZE, False, pid)
    if not handle:
        return ctypes.get_last_error() == _ERROR_ACCESS_DENIED
    try:
        return kernel32.WaitForSingleObject(handle, 0) == _WAIT_TIMEOUT
    finally:
        kernel32.CloseHandle(handle)
