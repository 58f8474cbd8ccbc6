"""Execute demo notebooks in a real Jupyter kernel and print what they show.

    python demos/run.py demos/quickstart.ipynb [more.ipynb ...]

Each executed notebook is also written to demos/out/. What the kernel and
its workers print themselves (not a cell's output) comes straight to this
terminal while a notebook runs, before its cells are shown; a notebook that
prints something there on purpose says so first.
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

OUT = Path(__file__).with_name("out")


def execute(path, timeout=120):
    """Run the notebook at ``path``; return the executed notebook."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(Path(path).parent)}},
    )
    client.execute()
    OUT.mkdir(exist_ok=True)
    nbformat.write(notebook, OUT / Path(path).name)
    return notebook


def output_text(output):
    """The text a person sees for one cell output."""
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return f"{output.ename}: {output.evalue}\n"
    data = output.get("data", {})
    return data.get("text/plain", "") + "\n"


def show(notebook):
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        prompt = cell.get("execution_count") or " "
        print(f"In [{prompt}]: " + cell.source.replace("\n", "\n      "))
        for output in cell.get("outputs", []):
            print(output_text(output), end="")
        print()


def note(path):
    """What to say before running the notebook (its ``parmagic_demo`` note,
    see make_demos.py): output of its processes that is expected, such as
    a worker's crash report, which the kernel prints to this terminal."""
    metadata = nbformat.read(path, as_version=4).metadata
    return metadata.get("parmagic_demo", {}).get("note")


def main(paths):
    for path in paths:
        print(f"=== {path} ===", flush=True)
        expected = note(path)
        if expected:
            print(f"({expected})", flush=True)  # before what the kernel prints
        show(execute(path))
    print(f"executed notebooks written to {OUT}/")


if __name__ == "__main__":
    main(sys.argv[1:] or [str(Path(__file__).with_name("quickstart.ipynb"))])
