"""%pmap and %%parmap through a real IPython InteractiveShell."""

import pytest
from IPython.core.error import UsageError


def cell(shell, source):
    """Run a cell as the user would; return its value, failing on any error."""
    result = shell.run_cell(source)
    if not result.success:
        raise result.error_in_exec or result.error_before_exec
    return result.result


def usage_error(shell, source):
    result = shell.run_cell(source)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    return str(result.error_in_exec)


@pytest.fixture
def square(shell):
    cell(shell, "def square(x):\n    return x * x\n")


SQUARES = [i * i for i in range(10)]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("%pmap square range(10)", SQUARES),
        ("%pmap (lambda x: x ** 2) range(10)", SQUARES),
        ("%pmap lambda x: x ** 2, range(10)", SQUARES),
        ("%pmap pow range(10) [2]*10", SQUARES),
        ("%pmap pow, range(10), [2] * 10", SQUARES),
        ("%pmap square (1, 2, 3)", [1, 4, 9]),
        ("%pmap -n 2 -b threading square range(10)", SQUARES),
        ("%pmap --n-jobs 2 --backend sequential square range(10)", SQUARES),
        ("%pmap --star pow [(2, 3), (3, 2)]", [8, 9]),
        ("%pmap --batch-size 3 square range(10)", SQUARES),
        ("%pmap -n -1 square range(10)", SQUARES),
    ],
)
def test_line_magic_forms_show_ordered_results_as_out(shell, square, line, expected):
    assert cell(shell, line) == expected


def test_result_can_be_assigned_and_bound_with_out(shell, square):
    cell(shell, "squares = %pmap -o also square range(4)")
    assert shell.user_ns["squares"] == [0, 1, 4, 9]
    assert shell.user_ns["also"] == [0, 1, 4, 9]


def test_every_run_binds_the_record(shell, square):
    cell(shell, "%pmap -n 2 -b threading square range(3)")
    record = shell.user_ns["_parmap"]
    assert record.results == [0, 1, 4]
    assert (record.n_jobs, record.backend, record.status) == (2, "threading", "done")
    assert record.wall_time > 0


def test_cell_magic_runs_the_cell_then_maps_its_last_function(shell):
    value = cell(
        shell,
        "%%parmap -n 2 -o results range(5)\n"
        "import math\n"
        "OFFSET = 100\n"
        "def helper(x):\n    return x + OFFSET\n"
        "def shifted_factorial(x):\n    return helper(math.factorial(x))\n",
    )
    expected = [101, 101, 102, 106, 124]
    assert value == expected
    assert shell.user_ns["results"] == expected
    # the cell's definitions persist, as in a normal cell
    assert shell.user_ns["helper"](1) == 101
    assert shell.user_ns["_parmap"].results == expected


def test_cell_magic_maps_a_lambda_or_the_function_named_with_f(shell):
    assert cell(shell, "%%parmap range(3)\nneg = lambda x: -x\n") == [0, -1, -2]
    source = "%%parmap -f first range(3)\ndef first(x): return x + 1\ndef second(x): return 0\n"
    assert cell(shell, source) == [1, 2, 3]


def test_cell_magic_takes_several_iterables_and_cell_variables(shell):
    source = "%%parmap xs ys\nxs = [1, 2, 3]\nys = [10, 20, 30]\ndef add(a, b): return a + b\n"
    assert cell(shell, source) == [11, 22, 33]


def test_cell_magic_error_in_the_cell_maps_nothing(shell):
    result = shell.run_cell("%%parmap range(3)\ndef f(x): return x\nraise ValueError('oops')\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "nothing was mapped" in str(result.error_in_exec)
    assert "_parmap" not in shell.user_ns


@pytest.mark.parametrize("options", ["", "-f f "])
def test_cell_magic_syntax_error_is_shown_as_the_cell_would_show_it(shell, capsys, options):
    before = _namespace_snapshot(shell)
    result = shell.run_cell(f"%%parmap {options}range(3)\nx = 1\ndef f(x):\n    return x +\n")
    shown = capsys.readouterr().out
    assert "SyntaxError: invalid syntax" in shown
    assert "line 3" in shown and "    return x +\n" in shown  # the line, as a cell shows it
    assert "defines no function" not in shown + str(result.error_in_exec)
    assert "nothing was mapped" in str(result.error_in_exec)
    assert "_parmap" not in shell.user_ns
    assert _namespace_snapshot(shell) == before  # nothing in the cell ran


def test_exception_classes_defined_in_the_notebook_are_caught_by_their_class(shell):
    cell(shell, "class MyError(Exception):\n    pass\n"
                "def odd(x):\n    if x % 2:\n        raise MyError(x)\n    return x\n")
    source = "try:\n    %pmap -n 2 odd [0, 1]\nexcept MyError as exc:\n    caught = exc\n"
    cell(shell, source)
    assert type(shell.user_ns["caught"]) is shell.user_ns["MyError"]
    source = ("try:\n    %pmap -n 2 --on-error collect odd range(4)\n"
              "except* MyError as group:\n    caught = group.exceptions\n")
    cell(shell, source)
    assert [type(e).__name__ for e in shell.user_ns["caught"]] == ["MyError", "MyError"]


def test_config_sets_session_defaults(shell, square):
    cell(shell, "%config ParMagic.n_jobs = 2")
    cell(shell, "%config ParMagic.backend = 'threading'")
    cell(shell, "%pmap square range(3)")
    record = shell.user_ns["_parmap"]
    assert (record.n_jobs, record.backend) == (2, "threading")
    # an option on the line still wins
    cell(shell, "%pmap -b sequential square range(3)")
    assert shell.user_ns["_parmap"].backend == "sequential"


def test_config_batch_size_is_used(shell, square):
    cell(shell, "%config ParMagic.batch_size = 2")
    assert cell(shell, "%pmap square range(5)") == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("magic, kind", [("pmap", "line"), ("parmap", "cell")])
def test_help_documents_every_option_and_shows_examples(shell, magic, kind):
    method = shell.magics_manager.magics[kind][magic]
    doc, parser = method.__doc__, method.parser
    flat = " ".join(doc.split())  # argparse wraps help text to the terminal width
    for action in parser._actions:
        names = action.option_strings or [action.metavar]
        meaning = " ".join((action.help or "").split())
        assert len(meaning.split()) >= 3, f"{names}: no help saying what it does"
        # argparse writes "-n N, --n-jobs N   Number of ...": the names, then the help
        entry = flat.find(f" {meaning}")
        assert entry != -1, f"{names}: help missing from %{magic}?"
        written = flat[:entry].split()[-2 * len(names):]
        if action.option_strings:
            assert set(names) <= {word.rstrip(",") for word in written}, (names, written)
        else:
            assert " ".join(written).endswith(action.metavar), (names, written)
    examples = [line for line in doc.splitlines() if "In [" in line and f"%{magic} " in line]
    assert len(examples) >= 2, f"%{magic}? shows no In [n]: examples"
    known = {name: action for action in parser._actions for name in action.option_strings}
    for example in examples:  # each example's options exist and parse
        words = example.split("#")[0].split(f"%{magic} ", 1)[1].split()
        options = []
        while words and words[0].startswith("-"):
            name = words.pop(0)
            assert name in known, f"{example!r}: unknown option {name}"
            options += [name] + ([words.pop(0)] if known[name].nargs != 0 else [])
        parser.parse_args(options)
    assert "ParMagic." in doc  # where the defaults come from
    if kind == "cell":  # the prose names every option it shares with %pmap
        shared = flat[flat.index("The options are those of"):].split(".")[0]
        listed = set(shared.replace(",", " ").replace("/", " ").split())
        pmap_parser = shell.magics_manager.magics["line"]["pmap"].parser
        for action in pmap_parser._actions:
            if action.option_strings:
                assert listed & set(action.option_strings), action.option_strings


@pytest.mark.parametrize("magic, kind", [("pmap", "line"), ("parmap", "cell")])
def test_help_reads_as_plain_text(shell, magic, kind):
    doc = shell.magics_manager.magics[kind][magic].__doc__
    assert doc.startswith(f"%{magic} [")  # the usage line, without RST's "::" before it
    assert "::" not in doc and "<" not in doc, doc  # no RST markers, no <METAVARS>
    if kind == "cell":
        example = doc[doc.index("In [1]: %%parmap"):doc.index("In [2]")]
        assert "import time" in example.split("def ")[0]  # it uses time.sleep


def test_functions_read_notebook_globals_at_call_time(shell):
    cell(shell, "K = 1\ndef add_k(x):\n    return x + K\n")
    cell(shell, "K = 5")
    assert cell(shell, "%pmap add_k range(3)") == [5, 6, 7]


def test_notebook_closures_classes_and_modules_work_in_workers(shell):
    cell(
        shell,
        "import math\n"
        "class Box:\n"
        "    def __init__(self, v): self.v = v\n"
        "    def __repr__(self): return f'Box({self.v})'\n"
        "def make_scaler(k):\n"
        "    def scale(x): return math.sqrt(x) * k\n"
        "    return scale\n"
        "scaler = make_scaler(10)\n",
    )
    assert cell(shell, "%pmap scaler [4, 9]") == [20.0, 30.0]
    boxes = cell(shell, "boxes = %pmap Box range(3)\nboxes")
    assert repr(boxes) == "[Box(0), Box(1), Box(2)]"
    assert cell(shell, "%pmap (lambda b: b.v + 1) boxes") == [1, 2, 3]


def _namespace_snapshot(shell):
    hidden = shell.user_ns_hidden
    return {
        name: id(value)
        for name, value in shell.user_ns.items()
        if name not in hidden and not name.startswith("_") and name not in ("In", "Out")
    }


@pytest.mark.parametrize(
    "line, message",
    [
        ("%pmap nope range(3)", "name 'nope' is not defined"),
        ("%pmap square 5", "ITERABLE '5' is not iterable"),
        ("%pmap data range(3)", "FUNC 'data' is not callable"),
        ("%pmap square", "missing ITERABLE"),
        ("%pmap", "Usage: %pmap [options] FUNC ITERABLE"),
        ("%pmap -n 0 square range(3)", "n_jobs=0"),
        ("%pmap -n abc square range(3)", "invalid int value: 'abc'"),
        ("%pmap -b nope square range(3)", "expected one of threading, sequential"),
        ("%pmap -x square range(3)", "unrecognized arguments: -x"),
        ("%pmap --frobnicate square range(3)", "unrecognized arguments: --frobnicate"),
        ("%pmap square range(", "cannot read"),
        ("%pmap square range(3) +", "cannot parse"),
        ("%pmap pow range(10) [2] * 10", "comma form"),
        ("%pmap square range('a')", "evaluating \"range('a')\" raised TypeError"),
        ("%pmap -o 3x square range(3)", "'3x' is not a valid Python name"),
        ("%pmap --batch-size 0 square range(3)", "batch_size"),
        ("%pmap --timeout 0 square range(3)", "timeout must be a positive number"),
        ("%pmap --timeout soon square range(3)", "invalid float value: 'soon'"),
        ("%pmap --on-error ignore square range(3)", "invalid choice: 'ignore'"),
        ("%pmap --star pow range(2) range(2)", "star=True takes one iterable"),
        ("%%parmap range(3)\nx = 1\n", "the cell defines no function"),
        ("%%parmap -f missing range(3)\nx = 1\n", "no function named 'missing'"),
        ("%%parmap\ndef f(x): return x\n", "missing ITERABLE"),
        ("%%parmap -n 0 range(3)\ndef f(x): return x\n", "n_jobs=0"),
        ("%pmap --retries -1 square range(3)", "retries must be a whole number >= 0"),
        ("%pmap --retries two square range(3)", "invalid int value: 'two'"),
        ("%pmap --retries 1 --retry-on Nope square range(3)", "no exception class named 'Nope'"),
        ("%pmap --retries 1 --retry-on data square range(3)", "is not an exception class"),
        ("%pmap --retry-on ValueError square range(3)", "give retries=N"),
        ("%%parmap --retries -1 range(3)\ndef f(x): return x\n", "retries must be"),
    ],
)
def test_bad_input_is_a_one_line_usage_error_and_changes_nothing(shell, square, line, message):
    cell(shell, "data = [1, 2, 3]")
    before = _namespace_snapshot(shell)
    text = usage_error(shell, line)
    assert message in text
    assert "\n" not in text
    assert "_parmap" not in shell.user_ns
    after = _namespace_snapshot(shell)
    if line.startswith("%%parmap -f missing"):
        after.pop("x")  # the cell itself ran and defined x, as a cell does
    assert after == before


def test_empty_iterable_gives_an_empty_list(shell, square):
    assert cell(shell, "%pmap square []") == []
    assert shell.user_ns["_parmap"].status == "done"


def test_failing_item_raises_the_original_exception(shell):
    cell(shell, "def inv(x):\n    return 1 / x\n")
    result = shell.run_cell("%pmap -n 2 --batch-size 1 inv [1, 2, 0, 4]")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert "item 2 (0)" in "\n".join(result.error_in_exec.__notes__)
    assert shell.user_ns["_parmap"].errors[2].item_repr == "0"


def test_load_twice_unload_and_reload(shell, square):
    shell.run_line_magic("load_ext", "parmagic")  # already loaded: harmless
    assert cell(shell, "%pmap square range(2)") == [0, 1]
    shell.run_line_magic("unload_ext", "parmagic")
    assert "pmap" not in shell.magics_manager.magics["line"]
    assert "parmap" not in shell.magics_manager.magics["cell"]
    result = shell.run_cell("%pmap square range(2)")
    assert result.error_in_exec is not None
    shell.run_line_magic("load_ext", "parmagic")
    shell.run_line_magic("reload_ext", "parmagic")
    assert cell(shell, "%pmap square range(2)") == [0, 1]
    configurables = [c for c in shell.configurables if type(c).__name__ == "ParMagic"]
    assert len(configurables) == 1


SEED = "A = [0, 0, 0, 0]\ndef update_array(i):\n    global A\n    A[i] = i\n"


def _mutation_warnings(shell, source):
    import warnings

    from parmagic import GlobalMutationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = cell(shell, source)
    return value, [str(w.message) for w in caught if w.category is GlobalMutationWarning]


def test_seed_case_warns_in_the_line_magic(shell):
    cell(shell, SEED)
    value, texts = _mutation_warnings(shell, "%pmap -n 2 update_array range(4)")
    assert value == [None] * 4
    assert shell.user_ns["A"] == [0, 0, 0, 0]
    assert len(texts) == 1
    assert "update_array changes the global A (line 4: A[i] = i)" in texts[0]
    assert "Every result is None" in texts[0]
    record = shell.user_ns["_parmap"]
    assert record.changed_globals == ["A"]
    assert "globals changed: A" in repr(record)


def test_cell_magic_and_lambdas_are_checked(shell):
    source = "%%parmap -n 2 range(3)\nLOG = []\ndef record(i):\n    LOG.append(i)\n    return i\n"
    _, texts = _mutation_warnings(shell, source)
    assert len(texts) == 1 and "the global LOG" in texts[0]
    _, texts = _mutation_warnings(shell, "%pmap -n 2 (lambda i: LOG.append(i)) range(3)")
    assert len(texts) == 1 and "the global LOG" in texts[0]


def test_no_warn_and_config_turn_the_check_off(shell):
    cell(shell, SEED)
    _, texts = _mutation_warnings(shell, "%pmap -n 2 --no-warn update_array range(4)")
    assert texts == []
    cell(shell, "%config ParMagic.warn_mutation = False")
    _, texts = _mutation_warnings(shell, "%pmap -n 2 update_array range(4)")
    assert texts == []


def test_on_error_collect_and_config_default(shell):
    cell(shell, "def inv(x):\n    return 1 / x\n")
    result = shell.run_cell("%pmap -n 2 --on-error collect inv [1, 0, 2, 0]")
    assert isinstance(result.error_in_exec, ExceptionGroup)
    assert sorted(shell.user_ns["_parmap"].errors) == [1, 3]
    cell(shell, "%config ParMagic.on_error = 'collect'")
    result = shell.run_cell("%pmap -n 2 inv [0, 1]")
    assert isinstance(result.error_in_exec, ExceptionGroup)
    assert shell.user_ns["_parmap"].results[1] == 1.0


def test_timeout_option_and_config_default(shell):
    cell(shell, "import time\ndef nap(s):\n    time.sleep(s)\n    return s\n")
    result = shell.run_cell("%pmap -n 2 --timeout 0.5 nap [0.1, 20]")
    assert type(result.error_in_exec).__name__ == "ItemTimeoutError"
    cell(shell, "%config ParMagic.timeout = 0.5")
    result = shell.run_cell("%pmap -n 2 nap [20]")
    assert type(result.error_in_exec).__name__ == "ItemTimeoutError"
    assert cell(shell, "%pmap -n 2 --timeout 5 nap [0.1]") == [0.1]


def test_progress_options_and_config(shell, capsys):
    cell(shell, "%pmap -n 2 --progress abs [-1, -2]")
    assert "2/2" in capsys.readouterr().err
    cell(shell, "%config ParMagic.progress = False")
    cell(shell, "%pmap -n 2 --progress abs [-1, -2]")  # the line wins
    assert "2/2" in capsys.readouterr().err
    cell(shell, "%pmap -n 2 abs [-1, -2]")
    assert capsys.readouterr().err == ""


def test_cell_magic_takes_the_same_new_options(shell):
    result = shell.run_cell(
        "%%parmap -n 2 --on-error collect --timeout 5 --no-progress [1, 0]\n"
        "def inv(x):\n    print('item', x)\n    return 1 / x\n"
    )
    assert isinstance(result.error_in_exec, ExceptionGroup)
    record = shell.user_ns["_parmap"]
    assert record.results[0] == 1.0 and list(record.errors) == [1]
    assert record.outputs == ["item 1\n", "item 0\n"]


def test_time_prints_a_summary_with_advice(shell, capsys):
    cell(shell, "import time\ndef nap(s):\n    time.sleep(s)\n    return s\n")
    cell(shell, "%pmap -n 2 -t nap [0.2]*4")
    shown = capsys.readouterr().out
    assert "parmap timing of nap: 4 items on 2 loky workers" in shown
    for fact in ("wall time", "worker CPU", "speedup", "dispatch overhead"):
        assert fact in shown
    assert "they mostly wait" in shown and "-b threading" in shown
    cell(shell, "%pmap -n 2 --time abs range(3000)")
    assert "costs more than it saves" in capsys.readouterr().out


def test_time_is_printed_for_a_failed_run_too(shell, capsys):
    cell(shell, "def inv(x):\n    return 1 / x\n")
    shell.run_cell("%pmap -n 2 -t inv [1, 0]")
    assert "parmap timing of inv" in capsys.readouterr().out


def test_cache_option_and_config(shell, tmp_path):
    cell(shell, "def double(x):\n    return 2 * x\n")
    assert cell(shell, f"%pmap -n 2 --cache {tmp_path / 'a'} double range(3)") == [0, 2, 4]
    assert cell(shell, f"%pmap -n 2 --cache {tmp_path / 'a'} double range(3)") == [0, 2, 4]
    assert shell.user_ns["_parmap"].n_cached == 3
    cell(shell, f"%config ParMagic.cache_dir = '{tmp_path / 'b'}'")
    cell(shell, "%pmap -n 2 double range(2)")
    assert cell(shell, "%pmap -n 2 double range(2)") == [0, 2]
    assert shell.user_ns["_parmap"].n_cached == 2
    assert (tmp_path / "b").is_dir()


def test_seed_option_and_config_give_the_same_numbers_every_run(shell):
    cell(shell, "import numpy as np\ndef draw(_):\n    return float(np.random.rand())\n")
    first = cell(shell, "%pmap -n 2 --seed 4 draw range(4)")
    assert cell(shell, "%pmap -n 1 --seed 4 draw range(4)") == first
    assert cell(shell, "%pmap -n 2 draw range(4)") != first  # not seeded
    cell(shell, "%config ParMagic.seed = 4")
    assert cell(shell, "%pmap -n 2 --batch-size 3 draw range(4)") == first
    assert "seed" in usage_error(shell, "%pmap --seed -3 draw range(4)")


def test_max_memory_option_and_config_stop_a_worker_that_passes_them(shell):
    cell(shell, "def eat(x):\n    if x == 1:\n        blocks = [bytearray(b'x' * 2**24)"
                " for _ in range(64)]\n    return x\n")
    result = shell.run_cell("%pmap -n 2 --max-memory 300MB eat range(3)")
    error = result.error_in_exec
    assert type(error).__name__ == "MemoryLimitError" and 1 in error.items
    assert "--max-memory 300 MB" in str(error)
    cell(shell, "%config ParMagic.max_memory = '300MB'")
    assert type(shell.run_cell("%pmap -n 2 eat range(3)").error_in_exec).__name__ == (
        "MemoryLimitError")
    assert cell(shell, "%pmap -n 2 --max-memory 4GB eat range(3)") == [0, 1, 2]
    assert "max_memory" in usage_error(shell, "%pmap --max-memory lots eat range(3)")
    assert "max_memory" in usage_error(shell, "%%parmap --max-memory lots range(3)\nX = 1")
    assert "X" not in shell.user_ns  # the cell did not run


def test_max_tasks_per_worker_option_and_config_replace_workers(shell):
    cell(shell, "import os\ndef pid(x):\n    return os.getpid()\n")
    assert len(set(cell(shell, "%pmap -n 2 --max-tasks-per-worker 1 pid range(4)"))) == 4
    cell(shell, "%config ParMagic.max_tasks_per_worker = 1")
    assert len(set(cell(shell, "%pmap -n 2 --batch-size 1 pid range(4)"))) == 4
    cell(shell, "%config ParMagic.max_tasks_per_worker = None")
    assert len(set(cell(shell, "%pmap -n 2 --batch-size 1 pid range(4)"))) <= 2
    assert "max_tasks_per_worker" in usage_error(
        shell, "%pmap --max-tasks-per-worker 0 pid range(3)")
    assert "max_tasks_per_worker" in usage_error(
        shell, "%%parmap --max-tasks-per-worker 0 range(3)\nX = 1")
    assert "X" not in shell.user_ns  # the cell did not run
    assert "--max-tasks-per-worker" in usage_error(
        shell, "%pmap --max-tasks-per-worker many pid range(3)")


FLAKY = """
from pathlib import Path

class Flaky(ConnectionError):
    pass

def fetch(x):
    path = Path({folder!r}) / str(x)
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    if x == 2 and attempt <= 2:
        raise Flaky(f"attempt {{attempt}}")
    return x
"""


def test_retries_and_retry_on_options_and_config(shell, tmp_path):
    def counted(name):
        folder = tmp_path / name
        folder.mkdir()
        cell(shell, FLAKY.format(folder=str(folder)))

    counted("a")
    assert cell(shell, "%pmap -n 2 --retries 2 --retry-on ConnectionError fetch range(4)") == [
        0, 1, 2, 3]
    assert shell.user_ns["_parmap"].attempts == {2: 3}
    assert "1 item needed a retry" in repr(shell.user_ns["_parmap"])
    counted("b")  # a class the notebook defines, by its name
    cell(shell, "%pmap -n 2 --retries 2 --retry-on Flaky,TimeoutError fetch range(4)")
    counted("c")
    result = shell.run_cell("%pmap -n 2 --retries 1 fetch range(4)")
    assert type(result.error_in_exec).__name__ == "Flaky"
    assert "item 2 (2) failed after 2 attempts" in result.error_in_exec.__notes__[0]
    counted("d")
    cell(shell, "%config ParMagic.retries = 2")
    assert cell(shell, "%pmap -n 2 fetch range(4)") == [0, 1, 2, 3]
    counted("e")
    assert cell(shell, "%%parmap -n 2 --retries 2 --retry-on Flaky2 range(4)\n"
                       "class Flaky2(Exception):\n    pass\n"
                       "def fetch2(x):\n    try:\n        return fetch(x)\n"
                       "    except Flaky as exc:\n        raise Flaky2(exc)\n") == [0, 1, 2, 3]
    assert shell.user_ns["_parmap"].attempts == {2: 3}


SETUP_CELL = """
import os
def setup_model():
    global MODEL
    with open({log!r}, "a") as log:
        log.write(f"{{os.getpid()}}\\n")
    MODEL = {{"w": 3}}
def f(x):
    return MODEL["w"] * x, os.getpid()
"""


def test_init_runs_setup_once_per_worker_and_leaves_the_namespace_alone(shell, tmp_path):
    log = tmp_path / "setup.log"
    cell(shell, SETUP_CELL.format(log=str(log)))
    results = cell(shell, "%pmap -n 2 --batch-size 1 --init setup_model f range(40)")
    assert [value for value, _ in results] == [3 * x for x in range(40)]
    calls = log.read_text().split()
    assert sorted(calls) == sorted({str(pid) for _, pid in results})  # once per worker
    assert "MODEL" not in shell.user_ns
    assert cell(shell, "%%parmap -n 2 --init setup2 range(3)\n"  # SETUP from the cell
                       "def setup2():\n    global OFFSET\n    OFFSET = 100\n"
                       "def shifted(x):\n    return x + OFFSET\n") == [100, 101, 102]
    assert "OFFSET" not in shell.user_ns


def test_init_names_that_are_not_functions_are_usage_errors(shell):
    cell(shell, "def f(x):\n    return x\nnot_a_function = 5\n")
    message = usage_error(shell, "%pmap --init setup_missing f range(4)")
    assert "name 'setup_missing' is not defined" in message
    message = usage_error(shell, "%pmap --init not_a_function f range(4)")
    assert "SETUP (init) must be a function" in message and "not int 5" in message


@pytest.mark.parametrize(
    "line, says",
    [
        ("%pmap square range(5) -n 2",
         "options come first: -n 2 is after the arguments. Write: %pmap -n 2 square range(5)"),
        ("%pmap -b threading square range(5) --timeout 3 -t",
         "options come first: --timeout 3 -t is after the arguments. "
         "Write: %pmap -b threading --timeout 3 -t square range(5)"),
    ],
)
def test_options_after_the_arguments_say_options_come_first(shell, square, line, says):
    assert usage_error(shell, line) == says


def test_cell_magic_options_after_the_iterable_say_options_come_first(shell):
    text = usage_error(shell, "%%parmap range(3) -n 2\ndef f(x):\n    return x\n")
    assert text == "options come first: -n 2 is after the arguments. Write: %%parmap -n 2 range(3)"
    assert "f" not in shell.user_ns  # the cell did not run


def test_after_a_double_dash_an_option_like_word_is_an_expression(shell):
    cell(shell, "import numpy as np\nn = np.array([1, 2])")
    assert cell(shell, "%pmap -- int -n") == [-1, -2]  # minus n, not the -n option
