"""Writes demos/quickstart.ipynb from the cells below (run it after editing)."""

from pathlib import Path

import nbformat

CELLS = [
    ("markdown", "# parmagic quickstart\n\nLoad the extension, then map functions over "
     "iterables on all cores with one line."),
    ("code", "%load_ext parmagic"),
    ("code", "def square(x):\n    return x * x\n\nsquares = %pmap square range(10)\nsquares"),
    ("markdown", "Lambdas work too: in brackets, or with commas between FUNC and ITERABLE. "
     "Several iterables are zipped, as with `map`."),
    ("code", "%pmap (lambda x: x ** 2) range(5)"),
    ("code", "%pmap pow, range(5), [3] * 5"),
    ("markdown", "`%%parmap` runs the cell, then maps the last function it defines. "
     "`-o` also binds the results to a name."),
    ("code", "%%parmap -n 2 -o slow_squares range(6)\nimport time\n\n"
     "def slow_square(x):\n    time.sleep(0.2)\n    return x * x"),
    ("code", "slow_squares"),
    ("markdown", "Every run leaves its record in `_parmap`."),
    ("code", "_parmap"),
    ("markdown", "The classic pitfall: a function that changes a global. Each worker "
     "process changes its own copy, so the change is lost. parmagic says so."),
    ("code", "A = [0, 0, 0, 0]\n\ndef update_array(i):\n    global A\n    A[i] = i\n\n"
     "%pmap update_array range(4)"),
    ("code", "A"),
    ("markdown", "The fix is to return the value and use the list that comes back."),
    ("code", "def update_array2(i):\n    return i\n\nA = %pmap update_array2 range(4)\nA"),
    ("markdown", "Mistakes are one-line `UsageError`s; nothing in the namespace changes."),
    ("code", "%pmap square 42"),
]


def build():
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in CELLS:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    # The last cell shows an error on purpose.
    notebook.cells[-1].metadata["tags"] = ["raises-exception"]
    path = Path(__file__).with_name("quickstart.ipynb")
    nbformat.write(notebook, path)
    return path


if __name__ == "__main__":
    print(build())
