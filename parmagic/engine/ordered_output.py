"""An item's captured output, printed in item order as it comes.

A serial loop prints each item's output while the item runs, one item
after another. A parallel run gets the output of several items at once, in
any order: this holds each item's output until every earlier item is done,
and prints the first unfinished item's output as it arrives.
"""


class OrderedOutput:
    """Prints each item's captured output in item order, so nothing
    interleaves: an item's output waits until every earlier item is done.
    The first unfinished item's output is printed as it comes (``live``),
    as in a serial loop; a later item's live output waits its turn, and
    when the item ends only the rest of its output is printed."""

    def __init__(self, write, record):
        self.write = write
        self.record = record
        self.waiting = {}  # index -> parts of an item that ended
        self.early = {}  # index -> live parts not printed yet
        self.live_parts = {}  # index -> the live parts of an item not ended yet
        # items whose worker said they ended (their output is all here),
        # before their chunk's result came
        self.ended = set()
        self.next_index = 0

    def add(self, index, parts):
        if index < self.next_index:  # its turn came as it ended (live)
            self._write_rest(index, parts)
        else:
            self.waiting[index] = parts

    def live(self, news):
        """More output of running items, and which items ended
        (a ``live_output.News``)."""
        for index, parts in news.parts:
            if index >= self.next_index:
                self.live_parts.setdefault(index, []).extend(parts)
                self.early.setdefault(index, []).extend(parts)
        self.ended.update(index for index in news.ended if index >= self.next_index)
        self.flush_ready()

    def forget(self, index):
        """Item ``index`` runs again: its next output starts afresh (what
        this attempt printed as it ran was printed, if its turn had come)."""
        self.early.pop(index, None)
        self.live_parts.pop(index, None)

    def flush_ready(self):
        """Print what is held, in item order, up to the first item that has
        not ended."""
        while self.waiting or self.early or self.ended:
            index = self.next_index
            if not self._write_held(index):
                if index in self.ended:
                    self.ended.discard(index)
                elif not self.record.is_finished(index):
                    return
            self.next_index += 1

    def flush_all(self):
        """At the end of the run: what is left, still in item order."""
        for index in sorted(self.waiting.keys() | self.early.keys()):
            self._write_held(index)

    def unended(self):
        """index -> what items that never sent their whole output (stopped,
        or their worker died) printed as they ran."""
        return self.live_parts

    def _write_held(self, index):
        """Print what is held of item ``index``: its live parts, then the
        rest of its output if it ended. Returns whether it had ended."""
        if index in self.early:
            self.write(self.early.pop(index))
        if index not in self.waiting:
            return False
        self._write_rest(index, self.waiting.pop(index))
        return True

    def _write_rest(self, index, parts):
        rest = parts[len(self.live_parts.pop(index, ())):]
        if rest:
            self.write(rest)
