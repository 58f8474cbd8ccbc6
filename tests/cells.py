"""Functions as a notebook defines them, for tests without a kernel.

``notebook_cell`` runs source in a namespace named ``__main__`` with the
source findable by ``inspect`` (as IPython makes it): its functions travel
to workers by value with the globals they read, as notebook functions do
(a test module's own functions would be imported by reference instead).
"""

import linecache
import textwrap


def notebook_cell(source, **names):
    """The namespace after running ``source`` (dedented), which starts with
    ``names``."""
    source = textwrap.dedent(source)
    filename = f"<cell-{abs(hash(source))}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__", **names}
    exec(compile(source, filename, "exec"), namespace)
    return namespace
