"""Quotas on the record target (`generation.quotas`): the most share of `num_records` the rows of
one category may take, the category read from a `meta` field (`task_type`, custom's `topic` or
`persona`, ...) or a dotted path into it (`source.document`: the documents method's document).
The value `*` caps each value the quota does not name, so no document takes more than its share.
A row whose category is full is dropped, in the order rows arrive, so a resumed run (which
replays every stored result in the same order) keeps the same rows; the record target then goes
back for rows of other categories."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from generator.core.records import Record
from generator.run.funnel import RunFunnel

EVERY = "*"  # a quota's value that caps each value the quota does not name


def meta_value(meta: dict[str, Any], key: str) -> str | None:
    """The value at `key`, a dotted path (`source.document`); None when a step is missing."""
    value: Any = meta
    for step in key.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return str(value)


class Quotas:
    def __init__(self, shares: dict[str, dict[str, float]], records: int) -> None:
        # meta key -> value -> most rows
        self.caps = {
            key: {value: math.floor(share * records) for value, share in d.items()} for key, d in shares.items()
        }
        self.counts: Counter[tuple[str, str]] = Counter()

    def categories(self, record: Record) -> list[tuple[str, str]]:
        """The (key, value) categories of `record` that a quota caps."""
        out = []
        for key, caps in self.caps.items():
            value = meta_value(record.meta, key)
            if value is not None and (value in caps or EVERY in caps):
                out.append((key, value))
        return out

    def cap(self, key: str, value: str) -> int:
        caps = self.caps[key]
        return caps[value] if value in caps else caps[EVERY]

    def fits(self, record: Record) -> bool:
        return not any(self.counts[k] >= self.cap(*k) for k in self.categories(record))

    def take(self, record: Record) -> None:
        self.counts.update(self.categories(record))

    def admit(self, records: list[Record], funnel: RunFunnel) -> list[Record]:
        """The records whose categories still have room, in order; the others go to the funnel."""
        out = []
        for r in records:
            if not self.fits(r):
                funnel.quota_full(r)
                continue
            self.take(r)
            out.append(r)
        return out
