"""Quotas on the record target (`generation.quotas`): the most share of `num_records` the rows of
one category may take, the category read from a `meta` field (`task_type`, custom's `topic` or
`persona`, ...). A row whose category is full is dropped, in the order rows arrive, so a resumed
run (which replays every stored result in the same order) keeps the same rows; the record target
then goes back for rows of other categories."""

from __future__ import annotations

import math
from collections import Counter

from generator.core.records import Record
from generator.run.funnel import RunFunnel


class Quotas:
    def __init__(self, shares: dict[str, dict[str, float]], records: int) -> None:
        # (meta field, value) -> most rows
        self.caps = {
            (key, value): math.floor(share * records) for key, d in shares.items() for value, share in d.items()
        }
        self.counts: Counter[tuple[str, str]] = Counter()

    def admit(self, records: list[Record], funnel: RunFunnel) -> list[Record]:
        """The records whose categories still have room, in order; the others go to the funnel."""
        out = []
        for r in records:
            keys = [k for k in ((key, str(r.meta.get(key))) for key, _ in self.caps) if k in self.caps]
            if any(self.counts[k] >= self.caps[k] for k in keys):
                funnel.quota_full(r)
                continue
            self.counts.update(keys)
            out.append(r)
        return out
