"""A stage's buffered log lines, stored flat so that garbage collection does not scan them one by one.

:class:`~pipeplug.logship.StageLogBuffer` keeps two of these per stage (unsent
lines, and lines sent since the last checkpoint); this module knows nothing
of piped.
"""

from __future__ import annotations

import array
import typing as t

from .piped import LogLine

#: rough protobuf framing per LogBlock, for batch sizing
_BLOCK_OVERHEAD = 32


class LogLines:
    """Log lines in order, stored flat: their texts in one bytearray, their numbers in arrays.

    A garbage collection visits every element of every list or deque it scans, and
    a stage buffering tens of thousands of lines as tuples made each collection take
    milliseconds, inside whichever write set it off. Here a line becomes a Python
    object only when it is read back (to be sent, or spilled to the process log).
    Positions are relative: 0 is the oldest line held.
    """

    __slots__ = ("_text", "_ends", "_indexes", "_severities", "_created", "_first")

    def __init__(self) -> None:
        self._text = bytearray()  # UTF-8 texts, back to back
        self._ends = array.array("q")  # where each line's text ends in _text
        self._indexes = array.array("q")
        self._severities = array.array("b")
        self._created = array.array("q")
        self._first = 0  # lines before this one were taken from the front (their storage is still here)

    def __len__(self) -> int:
        return len(self._ends) - self._first

    def append(self, index: int, text: str, severity: int, created_at: int) -> None:
        # Nothing the garbage collector tracks is made per line: the buffer gives it nothing to walk.
        self._text += text.encode()
        self._ends.append(len(self._text))
        self._indexes.append(index)
        self._severities.append(severity)
        self._created.append(created_at)

    def _start(self, at: int) -> int:
        """Where line ``at`` (counted from the start of the arrays, taken lines included) starts in _text."""
        return self._ends[at - 1] if at else 0

    def _adopt(self, other: LogLines) -> None:
        """Hold ``other``'s storage (which must no longer be used)."""
        self._text, self._ends, self._first = other._text, other._ends, other._first
        self._indexes, self._severities, self._created = other._indexes, other._severities, other._created

    def lines(self, start: int = 0, end: int | None = None) -> t.Iterator[LogLine]:
        """The lines from position ``start`` to ``end`` (exclusive), as tuples made one at a time."""
        first, stop = self._first + start, len(self._ends) if end is None else self._first + end
        if stop <= first:
            return
        offset = begin = self._start(first)
        ends = self._ends[first:stop]
        whole = self._text[begin : ends[-1]].decode()
        ascii = whole.isascii()  # then byte offsets are character offsets too
        for index, severity, created_at, end_byte in zip(self._indexes[first:stop], self._severities[first:stop], self._created[first:stop], ends):
            text = whole[begin - offset : end_byte - offset] if ascii else self._text[begin:end_byte].decode()
            yield (index, text, severity, created_at)
            begin = end_byte

    def size(self, start: int = 0, end: int | None = None) -> int:
        """Request payload of lines ``start:end``: their UTF-8 bytes plus framing per line."""
        end = len(self) if end is None else end
        if end <= start:
            return 0
        first, last = self._first + start, self._first + end - 1
        return self._ends[last] - self._start(first) + _BLOCK_OVERHEAD * (end - start)

    def chunks(self, max_bytes: int) -> list[tuple[int, int, int]]:
        """Split the lines, in order, into requests of at most ``max_bytes`` (one line at least): (start, end, size)."""
        chunks: list[tuple[int, int, int]] = []
        ends, first = self._ends, self._first
        start = first
        begin = self._start(first)  # where the current chunk's text starts
        size = 0
        for at in range(first, len(ends)):
            grown = ends[at] - begin + _BLOCK_OVERHEAD * (at - start + 1)
            if at > start and grown > max_bytes:
                chunks.append((start - first, at - first, size))
                start, begin = at, ends[at - 1]
                grown = ends[at] - begin + _BLOCK_OVERHEAD
            size = grown
        if len(ends) > start:
            chunks.append((start - first, len(ends) - first, size))
        return chunks

    def extend(self, other: LogLines, start: int = 0, end: int | None = None) -> None:
        """Append ``other``'s lines ``start:end``, in order."""
        end = len(other) if end is None else end
        if end <= start:
            return
        first, stop = other._first + start, other._first + end
        begin = other._start(first)
        shift = len(self._text) - begin
        self._text += other._text[begin : other._ends[stop - 1]]
        self._ends.extend(array.array("q", [e + shift for e in other._ends[first:stop]]))
        self._indexes.extend(other._indexes[first:stop])
        self._severities.extend(other._severities[first:stop])
        self._created.extend(other._created[first:stop])

    def take(self, count: int | None = None) -> LogLines:
        """Remove the ``count`` oldest lines (all by default) and return them."""
        taken = LogLines()
        if count is None or count >= len(self):
            taken._adopt(self)
            self._adopt(LogLines())
            return taken
        taken.extend(self, 0, count)
        self._first += count
        if self._first >= 1024 and self._first * 2 >= len(self._ends):
            kept = LogLines()  # let go of the taken lines' storage
            kept.extend(self)
            self._adopt(kept)
        return taken

    def put_back(self, front: LogLines) -> None:
        """Put ``front``'s lines back before these (a failed send returns its lines)."""
        if not len(front):
            return
        merged = LogLines()
        merged.extend(front)
        merged.extend(self)
        self._adopt(merged)
