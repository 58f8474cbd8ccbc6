"""Shared fixtures: an IPython shell with parmagic loaded, and checks that the
suite leaves no worker process behind. Tests marked ``linux`` or ``posix``
(see platforms.py) are skipped where the system lacks what they need; those
that start a kernel or a browser are marked ``slow``."""

import gc

import pytest
from platforms import missing_facility
from processes import stop_workers_and_wait


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "linux(facility): needs a Linux-only facility; skipped elsewhere")
    config.addinivalue_line(
        "markers", "posix(facility): needs a POSIX facility; skipped on Windows")
    config.addinivalue_line(
        "markers", "fallback(what): takes, on Linux, the path parmagic takes where "
        "WHAT is missing (as on macOS or Windows); pytest -m fallback runs them all")
    config.addinivalue_line(
        "markers", "slow: starts a real kernel (test_kernel_*.py, the soak among them) "
        "or a browser (test_browser.py); pytest -m 'not slow' leaves them out")


def pytest_collection_modifyitems(items):
    # one rule, by file, so a new kernel test is slow without remembering to say so
    for item in items:
        name = item.path.name
        if name.startswith("test_kernel_") or name == "test_browser.py":
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)  # before fixtures start kernels or clusters
def pytest_runtest_setup(item):
    reason = missing_facility(item)
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def no_workers_left_after_the_suite():
    yield
    gc.collect()
    alive = stop_workers_and_wait()
    assert not alive, f"worker processes left running: {alive}"


@pytest.fixture(scope="session")
def _ipython():
    from IPython.testing.globalipapp import start_ipython

    return start_ipython()


@pytest.fixture
def shell(_ipython):
    """The test IPython shell with parmagic loaded and a clean namespace."""
    _ipython.run_line_magic("load_ext", "parmagic")
    _ipython.run_cell("pass")
    before = set(_ipython.user_ns)
    yield _ipython
    for name in set(_ipython.user_ns) - before:
        del _ipython.user_ns[name]
    _ipython.run_line_magic("unload_ext", "parmagic")
    _ipython.config.pop("ParMagic", None)  # forget %config settings
