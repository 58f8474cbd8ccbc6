"""The progress bar outside Jupyter: tqdm text on stderr."""

import time

import pytest

from parmagic import ParmagicInputError, pmap
from parmagic.display import progress


def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_forced_bar_counts_items(capsys):
    pmap(abs, [-1, -2, -3], n_jobs=2, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "item" in err


def test_auto_bar_stays_hidden_for_short_runs(capsys, monkeypatch):
    # short = ended before the bar's delay, however slow this machine is
    monkeypatch.setattr(progress, "AUTO_DELAY", 60)
    pmap(abs, range(100), n_jobs=2)
    assert capsys.readouterr().err == ""


def test_auto_bar_appears_once_a_run_lasts_a_second(capsys):
    pmap(nap, [0.3] * 8, n_jobs=2)  # at least 1.2 s on two workers
    assert "8/8" in capsys.readouterr().err


def test_no_bar_when_switched_off(capsys):
    pmap(nap, [0.3] * 8, n_jobs=2, progress=False)
    assert capsys.readouterr().err == ""


def test_bad_progress_value_is_an_input_error():
    with pytest.raises(ParmagicInputError, match="progress must be"):
        pmap(abs, [1], progress="yes")


def fails_on_two(x):
    if x == 2:
        raise ValueError("two")
    return x


@pytest.mark.parametrize("on_error", ["raise", "collect"])
def test_failed_items_are_counted_beside_the_bar_never_as_done(capsys, on_error):
    with pytest.raises((ValueError, ExceptionGroup)):
        pmap(fails_on_two, range(4), n_jobs=2, progress=True, on_error=on_error)
    last = capsys.readouterr().err.split("\r")[-1]
    assert "1 failed" in last and "4/4" not in last and "100%" not in last
