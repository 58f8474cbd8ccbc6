"""Reading what the user typed after ``%pmap`` / ``%%parmap``.

Three steps, none of which evaluates anything:

1. ``split_chunks`` cuts the text into top-level, whitespace-separated chunks
   (brackets and strings stay whole), using Python's own tokenizer.
2. ``split_options`` takes the leading chunks that are options, so the rest of
   the text reaches step 3 exactly as typed (quotes and spacing intact).
3. ``split_func_and_iterables`` finds the FUNC and ITERABLE expressions:
   two or more chunks that each compile are FUNC ITERABLE...; otherwise the
   whole text must be one expression, a tuple ``FUNC, ITERABLE, ...``.

``find_cell_function`` picks the function a ``%%parmap`` cell defines.
"""

import ast
import functools
import io
import tokenize

from parmagic.common.errors import ParmagicInputError

LINE_USAGE = "%pmap [options] FUNC ITERABLE [ITERABLE ...]"
CELL_USAGE = "%%parmap [options] ITERABLE [ITERABLE ...]"

_BRACKETS = {"(": ")", "[": "]", "{": "}"}


class Chunk:
    """A piece of the magic's text and where it starts in that text."""

    def __init__(self, text, start):
        self.text = text
        self.start = start

    def __repr__(self):
        return f"Chunk({self.text!r}, {self.start})"


def split_chunks(text):
    """Top-level whitespace-separated chunks of ``text``.

    >>> [c.text for c in split_chunks("pow range(10) [2] * 10")]
    ['pow', 'range(10)', '[2]', '*', '10']
    """
    chunks, depth, chunk_start, prev_end = [], 0, None, None
    for token in _tokens(text):
        start, end = token.start[1], token.end[1]
        if chunk_start is not None and depth == 0 and start > prev_end:
            chunks.append(Chunk(text[chunk_start:prev_end], chunk_start))
            chunk_start = None
        if chunk_start is None:
            chunk_start = start
        if token.type == tokenize.OP and token.string in _BRACKETS:
            depth += 1
        elif token.type == tokenize.OP and token.string in _BRACKETS.values():
            depth = max(depth - 1, 0)
        prev_end = end
    if chunk_start is not None:
        chunks.append(Chunk(text[chunk_start:prev_end], chunk_start))
    return chunks


def _tokens(text):
    """Tokens of a one-line ``text``, without the layout tokens."""
    skip = {tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT}
    skip |= {tokenize.INDENT, tokenize.DEDENT}
    readline = io.StringIO(text.replace("\n", " ")).readline
    try:
        return [t for t in tokenize.generate_tokens(readline) if t.type not in skip]
    except (tokenize.TokenError, SyntaxError) as exc:
        message = exc.args[0] if exc.args else "unreadable text"
        raise ParmagicInputError(f"cannot read {text.strip()!r}: {message}") from None


def split_options(text, takes_value, is_option=None, magic="%pmap"):
    """Split ``text`` into (option words, rest of the text).

    Options come first, as with ``%timeit``. ``takes_value(word)`` says
    whether an option word consumes the next chunk as its value (``-n 4``).
    ``--`` ends the options explicitly. When ``is_option(word)`` is given,
    an option typed after the arguments is an input error that shows the
    line with the options first.
    """
    chunks = split_chunks(text)
    words = []
    position = 0
    ended = False  # by "--": what follows is arguments, whatever it looks like
    while position < len(chunks):
        word = chunks[position].text
        if word == "--":
            position += 1
            ended = True
            break
        if not _looks_like_option(word):
            break
        words.append(word)
        position += 1
        if takes_value(word) and position < len(chunks):
            words.append(chunks[position].text)
            position += 1
    rest = text[chunks[position].start :] if position < len(chunks) else ""
    if is_option is not None and not ended:
        _refuse_late_options(chunks[position:], words, takes_value, is_option, magic)
    return words, rest.strip()


def _refuse_late_options(chunks, words, takes_value, is_option, magic):
    """Options after the arguments would be read as expressions (``-n`` is
    minus n): say that they come first, with the line rewritten that way."""
    late, arguments = [], []
    position = 0
    while position < len(chunks):
        word = chunks[position].text
        if is_option(word):
            late.append(word)
            if takes_value(word) and position + 1 < len(chunks):
                position += 1
                late.append(chunks[position].text)
        else:
            arguments.append(word)
        position += 1
    if late:
        fixed = " ".join([magic, *words, *late, *arguments])
        raise ParmagicInputError(
            f"options come first: {' '.join(late)} is after the arguments. "
            f"Write: {fixed}"
        )


def _looks_like_option(word):
    return len(word) > 1 and word[0] == "-" and (word[1].isalpha() or word[1] == "-")


def split_func_and_iterables(text, usage=LINE_USAGE):
    """Return the FUNC expression and the ITERABLE expressions, as source text."""
    expressions = list(_expressions(text, usage))
    if len(expressions) < 2:
        raise ParmagicInputError(_usage_message(usage, "missing ITERABLE"))
    return expressions[0], expressions[1:]


def split_iterables(text, usage=CELL_USAGE):
    """The ITERABLE expressions of ``%%parmap``, as source text."""
    expressions = list(_expressions(text, usage))
    if not expressions:
        raise ParmagicInputError(_usage_message(usage, "missing ITERABLE"))
    return expressions


@functools.lru_cache(maxsize=256)  # a warm call often repeats a line: parse it once
def _expressions(text, usage):
    text = text.strip()
    if not text:
        return ()
    chunks = tuple(chunk.text for chunk in split_chunks(text))
    if len(chunks) >= 2 and all(_compiles(chunk) for chunk in chunks):
        return chunks
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ParmagicInputError(
            _usage_message(usage, f"cannot parse {text!r} ({exc.msg})")
        ) from None
    if isinstance(tree.body, ast.Tuple) and len(tree.body.elts) >= 2:
        return tuple(ast.get_source_segment(text, element) for element in tree.body.elts)
    return (text,)


def _compiles(source):
    try:
        ast.parse(source, mode="eval")
    except SyntaxError:
        return False
    return True


def _usage_message(usage, problem):
    return (
        f"{problem}. Usage: {usage}. An expression with spaces needs brackets "
        "or the comma form, e.g. %pmap pow, range(10), [2] * 10"
    )


def find_cell_function(cell_source):
    """Name of the last top-level ``def`` or ``NAME = lambda ...`` in a cell,
    or None when the cell defines no function."""
    try:
        tree = ast.parse(cell_source)
    except SyntaxError:
        return None  # running the cell reports the syntax error itself
    name = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = node.name
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Lambda)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            name = node.targets[0].id
    return name
