"""Telling a worker killed for memory from one that crashed (out_of_memory,
errors.crash_message)."""

import os

import pytest

from parmagic import pmap
from parmagic.engine import out_of_memory
from parmagic.common.errors import crash_message

LOKY_TEXT = ("A task has failed to un-serialize. ... The exit codes of the workers "
             "are {SIGKILL(-9)}")


def test_a_sigkill_while_the_system_killed_for_memory_says_memory_ran_out():
    message = crash_message(LOKY_TEXT, [3], out_of_memory=True)
    assert message.startswith("the system ran out of memory and killed a worker process")
    assert "item 3" in message and "fewer workers" in message


def test_a_sigkill_without_memory_kills_is_a_plain_crash():
    message = crash_message(LOKY_TEXT, [3, 4])
    assert message.startswith("a worker process died (SIGKILL(-9): killed")
    assert "items 3, 4; one of them made it crash" in message


def test_a_segfault_is_a_crash_even_while_memory_ran_out():
    text = LOKY_TEXT.replace("SIGKILL(-9)", "SIGSEGV(-11)")
    assert "segmentation fault" in crash_message(text, [1], out_of_memory=True)


def test_kills_reads_the_count_of_processes_killed_for_memory(tmp_path, monkeypatch):
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("pgfault 10\noom_kill 4\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
        vmstat if path == "/proc/vmstat" else path, *a, **k))
    assert out_of_memory.kills() == 4
    assert not out_of_memory.killed_since(4)
    assert out_of_memory.killed_since(3)
    assert not out_of_memory.killed_since(None)


def test_kills_is_none_where_linux_does_not_count_them(tmp_path, monkeypatch):
    real_open = open

    def missing(path, *args, **kwargs):
        if path == "/proc/vmstat":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", missing)
    assert out_of_memory.kills() is None
    assert not out_of_memory.killed_since(0)


def own_oom_score_adj(_):
    with open("/proc/self/oom_score_adj") as file:
        return int(file.read())


@pytest.mark.skipif(not os.path.exists("/proc/self/oom_score_adj"), reason="Linux only")
def test_workers_are_the_first_the_system_kills_and_the_notebook_is_not():
    before = own_oom_score_adj(None)
    assert pmap(own_oom_score_adj, range(4), n_jobs=2) == [1000] * 4
    assert own_oom_score_adj(None) == before  # the notebook's own is left alone
    assert pmap(own_oom_score_adj, range(4), n_jobs=2, backend="threading") == [before] * 4
