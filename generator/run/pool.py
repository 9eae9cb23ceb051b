"""The pool of accepted instructions, spilled to a file as it grows, so that a run of a million
instructions holds about 9 bytes for each of them rather than its record.

Methods read it as a list (`len`, an index, a slice) to pick demonstrations and parents; a record
is read back from the file when it is asked for. The completion stage takes its tasks from it
chunk by chunk (`tasks`).
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

from generator.core.records import Record

_BLOCK = 1 << 20  # bytes read at a time when the pool is read in order


class Pool(Sequence[Record]):
    """Records appended to an unnamed file in `directory` (removed by the system when the pool is
    closed or the process ends, however it ends), one JSON line each, with the offset of each line
    and whether it has an output kept in compact arrays."""

    def __init__(self, directory: Path) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)
        self._ends = array("q", [0])  # line i is bytes [_ends[i], _ends[i + 1])
        self._has_output = bytearray()

    def extend(self, records: Iterable[Record]) -> None:
        lines = []
        for r in records:
            line = json.dumps([r.instruction, r.input, r.output, r.meta]).encode() + b"\n"
            lines.append(line)
            self._ends.append(self._ends[-1] + len(line))
            self._has_output.append(bool(r.output))
        if lines:
            self._file.seek(0, 2)
            self._file.write(b"".join(lines))

    def __len__(self) -> int:
        return len(self._has_output)

    @overload
    def __getitem__(self, i: int) -> Record: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Record]: ...

    def __getitem__(self, i: int | slice) -> Record | Sequence[Record]:
        if isinstance(i, slice):
            return _View(self, range(len(self))[i])
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"pool index {i} out of range ({n} records)")
        i %= n
        self._file.seek(self._ends[i])
        return _record(self._file.read(self._ends[i + 1] - self._ends[i]))

    def __iter__(self) -> Iterator[Record]:
        return self._read(lambda _: True)

    def tasks(self, first: int = 0) -> Iterator[Record]:
        """The records from index `first` on, as the completion stage takes them: those with an
        output first (they are done), then the others, each in pool order."""
        yield from self._read(lambda i: self._has_output[i], first)
        yield from self._read(lambda i: not self._has_output[i], first)

    def _read(self, wanted: Callable[[int], bool], first: int = 0) -> Iterator[Record]:
        """The records from index `first` on `wanted` by their index, read a block at a time at
        explicit offsets (the file's own position is left alone: the pool may be read by index
        meanwhile)."""
        if len(self) <= first:
            return  # a closed pool too
        self._file.flush()
        fd, n, i, offset = self._file.fileno(), len(self), first, self._ends[first]
        while i < n:
            # A block holds at least the next line, however long.
            block = os.pread(fd, max(_BLOCK, self._ends[i + 1] - offset), offset)
            start = 0
            while i < n and self._ends[i + 1] - offset <= len(block):
                stop = self._ends[i + 1] - offset
                if wanted(i):
                    yield _record(block[start:stop])
                start, i = stop, i + 1
            offset += start

    def close(self) -> None:
        """Release the file and the arrays: the pool is empty after."""
        self._file.close()
        self._ends = array("q", [0])
        self._has_output = bytearray()


class _View(Sequence[Record]):
    """A slice of the pool, read when indexed."""

    def __init__(self, pool: Pool, indices: range) -> None:
        self._pool = pool
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int | slice) -> Record | Sequence[Record]:  # type: ignore[override]
        if isinstance(i, slice):
            return _View(self._pool, self._indices[i])
        return self._pool[self._indices[i]]


def _record(line: bytes) -> Record:
    instruction, input_, output, meta = json.loads(line)
    return Record(instruction, input_, output, meta)
