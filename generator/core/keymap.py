"""A compact map from fixed-size byte keys to 64-bit integers, for indexes that grow with a run
(the store's request ids, exact dedup's keys): about `width + 8` bytes an entry, against 100 or
more in a dict of Python objects."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

MERGE_AT = 50_000


class KeyMap:
    """Keys of `width` bytes in a sorted numpy array with their values beside them. New keys wait
    in a dict until `MERGE_AT` of them have come, then are merged in (a merge copies the arrays:
    linear in the size, so about `size / MERGE_AT` merges' worth of copying for the whole run)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._keys = np.empty(0, dtype=f"S{width}")
        self._values = np.empty(0, dtype=np.int64)
        self._recent: dict[bytes, int] = {}

    def get(self, key: bytes) -> int | None:
        value = self._recent.get(key)
        if value is not None:
            return value
        i = int(np.searchsorted(self._keys, key))
        # numpy drops an S value's trailing NUL bytes: compare the same way
        if i < len(self._keys) and self._keys[i] == key.rstrip(b"\0"):
            return int(self._values[i])
        return None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def add(self, key: bytes, value: int) -> None:
        """Map `key` (of `width` bytes, not in the map yet) to `value`."""
        self._recent[key] = value
        if len(self._recent) >= MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        new = np.array(list(self._recent), dtype=self._keys.dtype)
        values = np.fromiter(self._recent.values(), dtype=np.int64, count=len(self._recent))
        order = np.argsort(new, kind="stable")
        new, values = new[order], values[order]
        at = np.searchsorted(self._keys, new)
        self._keys = np.insert(self._keys, at, new)
        self._values = np.insert(self._values, at, values)
        self._recent = {}

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    def __iter__(self) -> Iterator[bytes]:
        """The keys: the latest (in the order added), then the merged ones (sorted)."""
        yield from self._recent
        for key in self._keys:
            yield bytes(key).ljust(self.width, b"\0")
