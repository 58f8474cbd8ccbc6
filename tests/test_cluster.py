"""%pmap -b dask on a real distributed.LocalCluster (2 worker processes on
127.0.0.1), and -b ray on a local Ray instance, through the magics."""

import importlib.util
import os
import re
import signal
import threading
import time
import warnings

import psutil
import pytest
from IPython.core.error import UsageError
from platforms import needs_posix
from processes import worker_processes
from shown import traceback_text

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


def cell(shell, code):
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def test_dask_without_a_client_says_how_to_get_one(shell):
    with pytest.raises(ValueError):
        distributed.default_client()  # no client in this process yet
    result = shell.run_cell("%pmap -b dask abs [-1]")
    assert isinstance(result.error_in_exec, UsageError)
    assert "needs a dask.distributed Client" in str(result.error_in_exec)
    assert "--scheduler ADDRESS" in str(result.error_in_exec)


@pytest.fixture(scope="module")
def dask_cluster():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address=":0",
        )
    client = distributed.Client(cluster)
    try:
        yield cluster, client
    finally:
        from parmagic import shutdown_workers

        shutdown_workers()  # closes the clients parmagic opened with --scheduler
        client.close()
        cluster.close()
        started = [p for p in psutil.Process().children(recursive=True)
                   if p.pid not in before and p in worker_processes()]
        _, alive = psutil.wait_procs(started, timeout=20)
        assert not alive, f"the cluster left processes running: {alive}"


def test_ordered_results_from_notebook_functions_and_lambdas(shell, dask_cluster):
    cell(shell, "offset = 100\ndef square(x):\n    return x * x\n")
    assert cell(shell, "%pmap -b dask square range(20)") == [i * i for i in range(20)]
    assert cell(shell, "%pmap -b dask (lambda x: x + offset) range(3)") == [100, 101, 102]
    record = shell.user_ns["_parmap"]
    assert (record.backend, record.n_jobs) == ("dask", 2)


def test_cell_magic_on_dask(shell, dask_cluster):
    result = cell(shell, "%%parmap -b dask -o cubes range(4)\ndef cube(x):\n    return x ** 3\n")
    assert result == [0, 1, 8, 27] == shell.user_ns["cubes"]


def test_errors_name_the_item_and_show_the_notebook_line(shell, dask_cluster):
    cell(shell, "def inv(x):\n    return 1 / x\n")
    error = shell.run_cell("%pmap -b dask inv [1, 0, 2]").error_in_exec
    assert isinstance(error, ZeroDivisionError)
    assert "item 1 (0) failed" in error.__notes__[0]
    assert "return 1 / x" in traceback_text(error)
    error = shell.run_cell("%pmap -b dask --on-error collect inv [0, 1, 0]").error_in_exec
    assert isinstance(error, ExceptionGroup) and "2 of 3 items failed" in str(error)


def test_retries_on_dask_run_a_flaky_item_again(shell, dask_cluster, tmp_path):
    cell(shell, "from pathlib import Path\nclass Flaky(Exception):\n    pass\n"
                f"def fetch(x, folder={str(tmp_path)!r}):\n"
                "    path = Path(folder) / str(x)\n"
                "    attempt = int(path.read_text()) + 1 if path.exists() else 1\n"
                "    path.write_text(str(attempt))\n"
                "    if x == 2 and attempt <= 2:\n        raise Flaky(attempt)\n"
                "    return x\n")
    assert cell(shell, "%pmap -b dask --retries 2 --retry-on Flaky fetch range(4)") == [
        0, 1, 2, 3]
    assert shell.user_ns["_parmap"].attempts == {2: 3}
    (tmp_path / "2").unlink()
    error = shell.run_cell("%pmap -b dask --retries 1 fetch range(4)").error_in_exec
    assert type(error).__name__ == "Flaky"
    assert "item 2 (2) failed after 2 attempts" in error.__notes__[0]


def test_worker_output_is_captured_in_item_order(shell, dask_cluster, capsys):
    cell(shell, "import time\ndef chatty(x):\n    time.sleep(0.05 * (3 - x))\n"
                "    print('item', x)\n    return x\n")
    cell(shell, "shown = %pmap -b dask --batch-size 1 chatty range(4)")
    assert capsys.readouterr().out == "item 0\nitem 1\nitem 2\nitem 3\n"
    assert shell.user_ns["_parmap"].outputs[2] == "item 2\n"


def test_mutation_warning_on_dask(shell, dask_cluster):
    cell(shell, "A = [0, 0, 0]\ndef update(i):\n    global A\n    A[i] = i\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cell(shell, "%pmap -b dask update range(3)")
    texts = [str(w.message) for w in caught if w.category.__name__ == "GlobalMutationWarning"]
    assert len(texts) == 1 and "the notebook's A is unchanged" in texts[0]
    assert shell.user_ns["A"] == [0, 0, 0]


@needs_posix("SIGKILL sent with os.kill")
def test_worker_killed_mid_run_is_retried_transparently(shell, dask_cluster):
    _, client = dask_cluster
    pids = list(client.run(os.getpid).values())
    killer = threading.Timer(0.6, os.kill, (pids[0], signal.SIGKILL))
    cell(shell, "import time\ndef nap(x):\n    time.sleep(0.3)\n    return x\n")
    killer.start()
    assert cell(shell, "%pmap -b dask --batch-size 1 nap range(10)") == list(range(10))
    client.wait_for_workers(2, timeout=30)  # the nanny restarted it


def test_item_that_keeps_killing_its_worker_is_a_clear_error(shell, dask_cluster):
    _, client = dask_cluster
    cell(shell, "import os\ndef die(x):\n    if x == 1:\n        os._exit(1)\n    return x\n")
    error = shell.run_cell("%pmap -b dask --batch-size 1 die range(3)").error_in_exec
    assert type(error).__name__ == "WorkerCrashError"
    # item 2 may share a dying worker with item 1 (a dask worker runs tasks
    # side by side), and then dask reports it killed too: either is true
    assert re.search(r"worker running item [12] died", str(error)), str(error)
    client.wait_for_workers(2, timeout=30)
    assert cell(shell, "%pmap -b dask abs [-1, -2]") == [1, 2]


def test_timeout_on_dask_stops_the_item_and_names_it(shell, dask_cluster):
    # Python code: the worker thread's watchdog stops it at its limit
    cell(shell, "import time\ndef spin(x):\n    end = time.monotonic() + x\n"
                "    while time.monotonic() < end:\n        pass\n    return x\n")
    error = shell.run_cell("%pmap -b dask --timeout 1 spin [0.1, 30]").error_in_exec
    assert type(error).__name__ == "ItemTimeoutError"
    assert str(error) == "the item ran longer than its 1 s time limit"
    assert "item 1 (30) failed" in error.__notes__[0]


def test_scheduler_address_option_and_config(shell, dask_cluster):
    cluster, _ = dask_cluster
    address = cluster.scheduler_address
    assert cell(shell, f"%pmap --scheduler {address} abs [-1, -2]") == [1, 2]
    assert shell.user_ns["_parmap"].backend == "dask"
    cell(shell, f"%config ParMagic.scheduler = '{address}'")
    assert cell(shell, "%pmap -b dask abs [-3]") == [3]
    assert cell(shell, "%pmap abs [-4]") == [4]  # the default backend ignores it
    assert shell.user_ns["_parmap"].backend == "loky"


def test_unreachable_scheduler_is_a_quick_usage_error(shell):
    started = time.monotonic()
    result = shell.run_cell("%pmap -b dask --scheduler tcp://127.0.0.1:9 abs [1]")
    assert isinstance(result.error_in_exec, UsageError)
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in str(result.error_in_exec)
    assert time.monotonic() - started < 10


def test_scheduler_with_another_backend_is_a_usage_error(shell):
    result = shell.run_cell("%pmap -b threading --scheduler tcp://127.0.0.1:9 abs [1]")
    assert isinstance(result.error_in_exec, UsageError)
    assert "is for the dask backend" in str(result.error_in_exec)


@pytest.mark.parametrize("backend, module", [("dask", "distributed"), ("ray", "ray")])
def test_missing_backend_package_says_what_to_install(shell, monkeypatch, backend, module):
    from joblib import parallel

    monkeypatch.delitem(parallel.BACKENDS, backend, raising=False)  # registered by a run
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real_find_spec(name, *a))
    result = shell.run_cell(f"%pmap -b {backend} abs [1]")
    assert isinstance(result.error_in_exec, UsageError)
    assert f'pip install "parmagic[{backend}]"' in str(result.error_in_exec)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installable on this platform")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_backend_on_a_local_instance(shell, local_ray, capsys):
    cell(shell, "def shout(x):\n    print('ray item', x)\n    return -x\n")
    cell(shell, "negatives = %pmap -b ray -n 2 shout range(5)")
    assert shell.user_ns["negatives"] == [0, -1, -2, -3, -4]
    assert capsys.readouterr().out == "".join(f"ray item {i}\n" for i in range(5))
    assert shell.user_ns["_parmap"].backend == "ray"
    cell(shell, "def inv(x):\n    return 1 / x\n")
    error = shell.run_cell("%pmap -b ray -n 2 inv [1, 0]").error_in_exec
    assert isinstance(error, ZeroDivisionError) and "item 1 (0)" in error.__notes__[0]
    # joblib's own multiprocessing backend is joblib's again afterwards
    assert cell(shell, "%pmap -b multiprocessing -n 2 abs [-1, -2]") == [1, 2]
    assert shell.user_ns["_parmap"].backend == "multiprocessing"
    from joblib.pool import PicklingPool

    assert PicklingPool.__bases__[0].__module__ == "multiprocessing.pool"
