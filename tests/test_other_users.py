"""On a shared machine, what a notebook shares with its workers is its
user's alone: another local user can read nothing of it, cannot make the
notebook use or remove something it did not make, and cannot hold up the
start of its workers.

The tests that prove another user is kept out run as root and try as the
user ``nobody``; elsewhere they are skipped, saying so.
"""

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from joblib import Parallel
from platforms import forces_fallback, needs_linux, needs_posix
from waiting import until

from parmagic import run
from parmagic.data import shared_data
from parmagic.engine.loky_pool import LokyPool
from parmagic.worker.chunk import Chunk


try:
    import pwd
except ImportError:  # Windows: no users to try as
    pwd = None


def _nobody():
    try:
        return pwd.getpwnam("nobody") if pwd is not None else None
    except KeyError:
        return None


as_root_with_nobody = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or _nobody() is None,
    reason="needs to run as root, with a user 'nobody' to try as")


def as_nobody(*command):
    """Run ``command`` as the user nobody; (whether it succeeded, its output)."""
    done = subprocess.run(command, user="nobody", group=_nobody().pw_gid, extra_groups=[],
                          cwd="/", capture_output=True, timeout=60)
    return done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def umask_zero():
    """The most open umask: whatever parmagic makes is private by itself."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def fresh_store(monkeypatch):
    """A store of this test's own, made at its first array and removed after."""
    monkeypatch.setattr(shared_data, "_store", None)
    yield
    shared_data.store().clear()


def _ours_in_dev_shm():
    """Every path under /dev/shm (links not followed) in the folders whose
    names carry this process's id, as parmagic's and joblib's do."""
    found = set()
    for name in os.listdir("/dev/shm"):
        if f"_{os.getpid()}_" in name:
            found.add(os.path.join("/dev/shm", name))
            for folder, folders, files in os.walk(os.path.join("/dev/shm", name)):
                found.update(os.path.join(folder, entry) for entry in folders + files)
    return found


def wait_for_file(path):
    while not os.path.exists(path):  # (the test creates it: never for long)
        time.sleep(0.01)


@needs_linux("/dev/shm and users to try as")
@as_root_with_nobody
def test_another_user_can_read_nothing_a_running_notebook_shares(tmp_path, umask_zero,
                                                                  fresh_store):
    # the control: a file anyone may read is read by nobody here
    control = tempfile.NamedTemporaryFile(dir="/dev/shm", prefix="parmagic-test-")
    control.write(b"readable")
    control.flush()
    os.chmod(control.name, 0o644)
    assert as_nobody("head", "-c", "8", control.name) == (True, b"readable")
    control.close()

    secret = np.full(2 * 2**20, 7, dtype=np.uint8)  # 2 MB: shared through the store
    started, go = tmp_path / "started", tmp_path / "go"

    def reads_the_secret(i):
        if i == 0:
            open(started, "w").close()
            wait_for_file(go)
        return int(secret[i])

    before = _ours_in_dev_shm()
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(record=run(
        reads_the_secret, [range(4)], n_jobs=2, progress=False)))
    runner.start()
    try:
        until(lambda: started.exists() or not runner.is_alive(), "the first item to start",
              seconds=120)
        assert started.exists(), "the run ended before its first item started"
        made = sorted(_ours_in_dev_shm() - before)
        store = shared_data.store().folder
        assert store in made, made
        assert any(path.startswith(store + os.sep) for path in made), made
        for path in made:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if os.path.isdir(path):
                assert mode == 0o700, (path, oct(mode))
                readable, shown = as_nobody("ls", path)
            else:
                assert mode & 0o077 == 0, (path, oct(mode))
                readable, shown = as_nobody("head", "-c", "16", path)
            assert not readable and b"Permission denied" in shown, (path, shown)
        # root reads what nobody could not: the array's bytes are there
        files = [path for path in made if path.startswith(store + os.sep)]
        assert any(open(path, "rb").read(16) == bytes(secret[:16]) for path in files)
    finally:
        go.touch()
        runner.join(120)
    assert outcome["record"].results == [7] * 4


@needs_posix("file modes")
def test_a_store_file_is_private_from_its_first_byte(tmp_path, umask_zero, monkeypatch):
    def no_chmod(*args, **kwargs):
        raise AssertionError("made open, then closed with chmod")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    store = store_in(tmp_path)
    try:
        path, written = store.put(np.arange(2**18, dtype=np.float64), set())
        assert written
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(store.folder).st_mode) == 0o700
    finally:
        store.clear()


@needs_posix("file modes and Unix sockets")
def test_the_folder_of_the_workers_socket_is_private(umask_zero):
    from parmagic.transport import channels

    folder = channels._socket_folder()
    try:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    finally:
        os.rmdir(folder)


def store_in(folder):
    return shared_data.SharedStore(root=str(folder))


def _dead_pid():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@needs_posix("symbolic links and file modes")
def test_a_link_planted_under_the_store_s_next_name_is_passed_over(tmp_path, monkeypatch):
    root, target = tmp_path / "shm", tmp_path / "elsewhere"
    root.mkdir()
    target.mkdir()
    planted = root / f"parmagic_{os.getpid()}_planted"
    planted.symlink_to(target)
    names = iter(["planted", "ownname1"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    store = store_in(root)
    try:
        path, _ = store.put(np.arange(2**18, dtype=np.float64), set())
        assert store.folder == str(root / f"parmagic_{os.getpid()}_ownname1")
        assert path.startswith(store.folder + os.sep)
        assert os.listdir(target) == [] and planted.is_symlink()
    finally:
        store.clear()
    assert planted.is_symlink() and target.is_dir()


@needs_posix("symbolic links, and os.kill(pid, 0) to tell whether a process exists")
def test_a_link_named_like_a_dead_notebook_s_folder_is_left_alone(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious").write_bytes(b"x")
    link = tmp_path / f"parmagic_{_dead_pid()}_link1234"
    link.symlink_to(target)
    shared_data.remove_orphans(str(tmp_path))
    assert link.is_symlink() and (target / "precious").exists()


@needs_linux("/dev/shm, and users to plant from")
@as_root_with_nobody
def test_what_another_user_planted_in_dev_shm_is_left_alone_and_the_run_goes_on(
        tmp_path, fresh_store):
    nobody = _nobody()
    dead = _dead_pid()
    theirs = f"/dev/shm/parmagic_{dead}_theirs12"
    link = f"/dev/shm/parmagic_{dead}_alink123"
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious").write_bytes(b"x")
    try:
        os.mkdir(theirs)
        open(os.path.join(theirs, "data"), "wb").close()
        os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
        os.symlink(target, link)
        os.lchown(link, nobody.pw_uid, nobody.pw_gid)
        big = np.arange(2**18, dtype=np.float64)
        record = run(np.sum, [[big, big + 1]], n_jobs=2, progress=False)
        assert record.results == [big.sum(), (big + 1).sum()]
        assert record.transfer.shared == 2 * big.nbytes  # through the store, as always
        assert os.path.exists(os.path.join(theirs, "data"))
        assert os.path.islink(link) and (target / "precious").exists()
    finally:
        shutil.rmtree(theirs, ignore_errors=True)
        if os.path.islink(link):
            os.unlink(link)


@pytest.fixture
def tcp_pool(monkeypatch):
    """Workers that connect over TCP on the loopback (as on Windows), and
    the connections a stranger opened on the listening port first:
    ``strangers(address)`` is called with the address once it listens."""
    from parmagic.transport import channels

    monkeypatch.delattr(channels.socket, "AF_UNIX", raising=False)
    listen = channels._listen
    opened = []

    def listen_and_let_strangers_in(folder, backlog):
        listener, address = listen(folder, backlog)
        opened.extend(strangers(address))
        return listener, address

    monkeypatch.setattr(channels, "_listen", listen_and_let_strangers_in)
    pool = LokyPool(Parallel(n_jobs=2, backend="loky"), private=True)
    yield pool, opened
    pool.close()
    for sock in opened:
        sock.close()


def strangers(address):
    silent = socket.create_connection(address)
    wrong_key = socket.create_connection(address)
    wrong_key.sendall(b"\x00\x00\x00\x18" + bytes(24))
    huge = socket.create_connection(address)  # announces a 2 GB hello
    huge.sendall(b"\x7f\xff\xff\xff")
    return [silent, wrong_key, huge]


def closed_by_the_other_end(sock):
    sock.settimeout(60)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@forces_fallback("no AF_UNIX: workers connect over TCP")
@pytest.mark.timeout(90)
def test_a_stranger_s_connection_does_not_hold_up_the_workers_or_get_in(tcp_pool):
    pool, opened = tcp_pool
    # the pool starts while the silent connection still says nothing (it
    # waited for a hello for up to two minutes before the workers' turn)
    futures = [pool.submit(Chunk(os.getpid, [(i, ())])) for i in range(2)]
    assert {f.result(timeout=60).values[0] for f in futures} == set(pool.executor._processes)
    silent, wrong_key, huge = opened
    assert closed_by_the_other_end(wrong_key) and closed_by_the_other_end(huge)
    # and the one that never spoke was let go once the workers were in
    assert closed_by_the_other_end(silent)


def where_it_was_mapped_from(array):
    return getattr(array, "filename", None)


@pytest.fixture
def forking():
    """Workers forked, so joblib maps large arguments itself (by spawn or
    forkserver, 3.14's default, parmagic sends each call pickled whole)."""
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("fork", force=True)
    yield
    multiprocessing.set_start_method(method, force=True)


@needs_linux("/dev/shm, where joblib puts its temporary folder")
def test_joblib_s_temporary_folder_for_multiprocessing_is_inside_the_private_store(
        umask_zero, fresh_store, forking):
    # joblib memory-maps large arguments from a folder it makes with the
    # umask's mode (here 0777): parmagic has it made inside its own store
    big = np.ones(2**18)  # 2 MB: joblib maps it instead of pickling it
    record = run(where_it_was_mapped_from, [[big, big]], n_jobs=2, backend="multiprocessing",
                 progress=False)
    store = shared_data.store().folder
    for path in record.results:
        assert path is not None, "the array was pickled, not mapped: nothing checked"
        assert store is not None and path.startswith(store + os.sep), path
        assert not os.path.exists(path)  # joblib removed it when the pool ended
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700


@needs_linux("/dev/shm, where joblib puts its temporary folder")
def test_a_temporary_folder_the_user_names_for_joblib_is_used_as_it_is(tmp_path, fresh_store,
                                                                       forking):
    from joblib import parallel_config

    big = np.ones(2**18)
    with parallel_config(temp_folder=str(tmp_path)):
        record = run(where_it_was_mapped_from, [[big]], n_jobs=2, backend="multiprocessing",
                     progress=False)
    assert record.results[0] is not None and record.results[0].startswith(str(tmp_path))
