"""--retries in a live ipykernel: a flaky notebook function whose exception
class the notebook defines is retried and succeeds; when retries run out the
user sees the item's own exception and a note saying after how many
attempts; a worker that dies is replaced and its items run again."""


import pytest
from kernel import STOP_ON_ERROR, parmagic_kernel, shown_traceback


NOTEBOOK = '''
import os
from pathlib import Path

FOLDER = Path({folder!r})

class Flaky(Exception):
    pass

def attempt(name):
    path = FOLDER / name
    number = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(number))
    return number

def fetch(x):
    if x == 2 and attempt(f"fetch-{{x}}") <= 2:
        raise Flaky(f"no answer for {{x}}")
    return x * 10

def crash_once(x):
    if x == 1 and attempt(f"crash-{{x}}") == 1:
        os._exit(3)
    return x
'''


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attempts")
    with parmagic_kernel(NOTEBOOK.format(folder=str(folder))) as live:
        yield live


def test_a_flaky_item_is_retried_and_the_record_says_so(kernel):
    shown = kernel.text(
        "values = %pmap -n 2 --no-progress --retries 2 --retry-on Flaky fetch range(4)\n"
        "print(values, _parmap.attempts)\n"
        "print(repr(_parmap).splitlines()[-1])\n"
    )
    assert shown == (
        "[0, 10, 20, 30] {2: 3}\n"
        "  retries: 1 item needed a retry, up to 3 attempts (see .attempts and .retried)\n"
    )


def test_when_retries_run_out_the_original_exception_and_the_note_are_shown(kernel):
    kernel.text("(FOLDER / 'fetch-2').unlink()")
    errors = []

    def collect(message):
        if message["msg_type"] == "error":
            content = message["content"]
            errors.append((content["ename"], content["evalue"],
                           shown_traceback(content)))

    reply = kernel.client.execute_interactive(
        "%pmap -n 2 --no-progress --retries 1 fetch range(4)", timeout=60,
        output_hook=collect, stop_on_error=STOP_ON_ERROR)
    assert reply["content"]["status"] == "error"
    [(name, value, traceback)] = errors
    assert (name, value) == ("Flaky", "no answer for 2")
    assert "parmagic: item 2 (2) failed after 2 attempts;" in traceback
    assert 'raise Flaky(f"no answer for {x}")' in traceback  # the user's own line
    assert kernel.text("print(_parmap.attempts, sorted(_parmap.errors))") == "{2: 2} [2]\n"


def test_an_item_that_crashed_its_worker_runs_again_on_a_fresh_one(kernel):
    shown = kernel.text(
        "values = %pmap -n 2 --no-progress --retries 1 crash_once range(4)\n"
        "print(values, 1 in _parmap.attempts)\n"
        "print(type(_parmap.retried[1][0].exception).__name__)\n"
    )
    assert shown == "[0, 1, 2, 3] True\nWorkerCrashError\n"
    assert kernel.text("again = %pmap -n 2 --no-progress abs [-1, -2]\nprint(again)") == "[1, 2]\n"
