"""What a user of the IPython terminal sees of the worker pool: -t's
worker start-up line, the oversubscription warning, and the timeline.
Each test runs an .ipy script through the ipython command."""

import re

import terminal
from parmagic.common.cores import cores

PRELUDE = """\
%config ParMagic.warm_pool = False
%load_ext parmagic
import psutil
def square(x):
    return x * x
def workers():
    return sorted(p.pid for p in psutil.Process().children(recursive=True)
                  if "resource_tracker" not in " ".join(p.cmdline()))
"""


def run_ipython(tmp_path, script):
    return terminal.run_ipython(tmp_path, PRELUDE + script)


def summaries(stdout):
    """The -t summaries printed, in order."""
    return ["parmap timing of" + part for part in stdout.split("parmap timing of")[1:]]


def test_the_first_call_on_new_workers_shows_their_start_up_apart(tmp_path):
    stdout, stderr = run_ipython(tmp_path, """\
%pmap -t -n 2 --no-progress square range(8)
%pmap -t -n 2 --no-progress square range(8)
parmagic_module = __import__("parmagic")
parmagic_module.shutdown_workers()  # as after an interrupt or a crash
%pmap -t -n 2 --no-progress square range(8)
""")
    first, warm, restarted = summaries(stdout)
    for cold in (first, restarted):
        assert re.search(r"\n  worker start-up    .+ \(2 workers started\)\n"
                         r"  dispatch overhead  ", cold)
        assert re.search(r"\nhint: Most of the overhead was starting 2 workers \(.+\); "
                         r"the next call reuses them\.\n", cold)
    assert "worker start-up" not in warm
    assert "starting" not in warm
    assert "Traceback" not in stdout + stderr


def test_more_jobs_than_items_and_cores_warn_once_and_leave_no_workers(tmp_path):
    n_items = cores() + 1  # more processes than cores, whatever the machine
    stdout, stderr = run_ipython(tmp_path, f"""\
%pmap -n 2 --no-progress square range(4)
before = workers()
print("workers before:", len(before))
squares = %pmap -t -n 64 --no-progress square range({n_items})
print("squares:", squares)
print("left over:", sorted(set(workers()) - set(before)))
%pmap -t -n 2 --no-progress square range(4)
print("same workers:", workers() == before)
""")
    warning = (f"OversubscriptionWarning: {n_items} worker processes (n_jobs=64, one per "
               f"item) on {cores()} CPU cores: they take turns on the cores")
    assert " ".join(stderr.split()).count(warning) == 1  # wrapped to the terminal's lines
    assert "parmagic:0" not in stderr  # one line, no file name before it
    assert f"squares: {[x * x for x in range(n_items)]}" in stdout
    oversubscribed, after = summaries(stdout)
    assert f"{n_items} items on {n_items} loky workers" in oversubscribed
    assert f"({n_items} workers started, {n_items} stopped)" in oversubscribed
    assert "the next such call starts them again" in oversubscribed
    assert "left over: []" in stdout
    assert "worker start-up" not in after  # the next call finds its pool warm
    assert "same workers: True" in stdout
    assert "Traceback" not in stdout + stderr


def test_the_timeline_is_saved_where_asked_or_says_how(tmp_path):
    stdout, stderr = run_ipython(tmp_path, """\
%pmap -n 2 --no-progress square range(8)
print("saved:", _parmap.timeline(path="timeline.png"))
_parmap.timeline()
""")
    assert "saved: timeline.png" in stdout
    assert (tmp_path / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert ("UserWarning: nothing here can show the timeline (matplotlib's 'agg' "
            "backend draws into files only): pass path='timeline.png' to save it") in stderr
    assert "<Axes" not in stdout
    assert "Traceback" not in stdout + stderr


def test_a_script_that_ends_while_the_pool_starts_leaves_nothing_and_says_nothing(tmp_path):
    # `%load_ext` starts the workers in the background; a script ending at
    # once must neither print loky's leak warnings nor leave its semaphores,
    # socket folder or worker processes behind
    import glob

    from kernel import started_by
    from waiting import until

    # a temp folder of the script's own: what it leaves there, and the
    # processes that carry it, are the script's (other suites may run beside)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    for _ in range(3):
        stdout, stderr = terminal.run_ipython(
            tmp_path, "import os\nprint(os.getpid())\n%load_ext parmagic\n", tmpdir=tmpdir)
        pid = int(stdout.split()[-1])
        assert "leaked" not in stderr and "Traceback" not in stderr, stderr
        assert glob.glob(f"/dev/shm/sem.loky-{pid}-*") == []
        assert list(tmpdir.iterdir()) == []  # no socket folder left
        until(lambda: not started_by(str(tmpdir)), "the script's workers gone", 10)
