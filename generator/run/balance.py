"""Balancing the record target (`generation.balance`): the least share of `num_records` the rows of
a group must take, where quotas (`generator.run.quota`) cap the most.

An attribute is one the representation lexicon knows (`gender`, `age`, `religion`, ...: the groups a
row's instruction, input and output mention, `generator.report.lexicon`) or else a `meta` field
(`persona`, `topic`, a dotted path) as for quotas. Shares are of the whole target: with
`{gender: {female: 0.5, male: 0.5}}` and 40 records, 20 rows must mention women and 20 men.

A row is admitted only if the rows still to come can meet every minimum after it: a row that would
take room the unmet minimums need (it mentions none of their groups) is dropped
(`target: balance_reserved`), in the order rows arrive, so a resumed run keeps the same rows. The
target is therefore never met before the minimums are; when the model cannot write enough rows of
a group, the run stops as stalled (or at its rounds or budget) and the reason names the minimums
left. Custom runs draw their topics and personas toward the groups still short (`weights`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from generator.core.errors import ConfigError
from generator.core.records import Record
from generator.run.quota import meta_value

# A custom crossing whose persona or topic names a group still short is drawn up to this many
# times more often (when every row still to take must be of that group; in proportion below).
BOOST = 4.0


def check_groups(balance: dict[str, dict[str, float]], target: dict[str, dict[str, float]]) -> None:
    """`generation.balance` and `report.representation_target` name the lexicon's attributes and
    groups (a balance may also name a `meta` field); checked when a run opens, before any server."""
    from generator.report.lexicon import check_groups as check

    for key, shares, others in (("generation.balance", balance, True), ("report.representation_target", target, False)):
        try:
            check(shares, "a share", others_allowed=others)
        except ValueError as err:
            raise ConfigError(f"{key}: {err}") from None


def record_text(record: Record) -> str:
    return "\n".join((record.instruction, record.input, record.output))


class Balance:
    def __init__(self, shares: dict[str, dict[str, float]], records: int) -> None:
        from generator.report.lexicon import load_lexicon

        self.lexicon = load_lexicon()
        # attribute -> group -> fewest rows
        self.minimums = {a: {g: math.ceil(s * records) for g, s in d.items()} for a, d in shares.items()}
        self.records = records
        self.counts: Counter[tuple[str, str]] = Counter()  # rows taken, per group
        self.taken = 0  # rows taken
        self.seen: Counter[tuple[str, str]] = Counter()  # finished rows judged, taken or not, per group

    def groups(self, record: Record) -> set[tuple[str, str]]:
        """The (attribute, group) pairs of `record` that a minimum names."""
        out = set()
        for attribute, minimums in self.minimums.items():
            if attribute in self.lexicon.attributes:
                found = self.lexicon.groups(record_text(record), attribute)
            else:
                value = meta_value(record.meta, attribute)
                found = {value} if value is not None else set()
            out.update((attribute, g) for g in found if g in minimums)
        return out

    def short(self, attribute: str, counts: Counter[tuple[str, str]] | None = None) -> int:
        """Rows the attribute's unmet minimums still need."""
        counts = self.counts if counts is None else counts
        return sum(max(0, n - counts[(attribute, g)]) for g, n in self.minimums[attribute].items())

    def fits(self, record: Record, room: int) -> bool:
        """Whether `record` may take one of the `room` rows left: after it, every attribute's unmet
        minimums still fit in the room that remains. Counts its groups as seen (the yield that sizes
        the next refill), so it is asked once per finished row, in order."""
        groups = self.groups(record)
        self.seen.update(groups)
        after = self.counts + Counter(groups)
        return all(self.short(a, after) <= room - 1 for a in self.minimums)

    def take(self, record: Record) -> None:
        self.counts.update(self.groups(record))
        self.taken += 1

    def instructions_for_minimums(self, completed: int) -> int | None:
        """Instructions the unmet minimums need at the yield so far of each short group (rows of
        the group per completed instruction); None when none is short or a short group has no row
        yet (the caller's own sizing then)."""
        need = 0
        for (a, g), short in self._short().items():
            if not self.seen[(a, g)]:
                return None
            need = max(need, math.ceil(short * completed / self.seen[(a, g)]))
        return need or None

    def _short(self) -> dict[tuple[str, str], int]:
        return {
            (a, g): n - self.counts[(a, g)]
            for a, minimums in self.minimums.items()
            for g, n in minimums.items()
            if self.counts[(a, g)] < n
        }

    def unmet(self) -> list[str]:
        """The minimums not met, as `attribute/group n of m`."""
        return [
            f"{a}/{g} {self.counts[(a, g)]} of {n}"
            for a, minimums in self.minimums.items()
            for g, n in minimums.items()
            if self.counts[(a, g)] < n
        ]

    def to_dict(self) -> dict[str, Any]:
        """Each minimum (rows) and the rows kept that count toward it."""
        return {
            a: {g: {"minimum": n, "rows": self.counts[(a, g)]} for g, n in minimums.items()}
            for a, minimums in self.minimums.items()
        }

    def weights(self, combos: Sequence[tuple[str, ...]], keys: Sequence[str]) -> list[float] | None:
        """A draw weight per crossing (its values under `keys`: topic, persona, ...): more for the
        crossings whose values name a group, or are a value, still short of its minimum; None when
        nothing is short."""
        # A group's need: its missing rows over the rows still to take (1: every row left must be its).
        room = max(1, self.records - self.taken)
        need = {key: min(1.0, short / room) for key, short in self._short().items()}
        if not need:
            return None
        return [1.0 + BOOST * sum(need.get(p, 0.0) for p in self._named(dict(zip(keys, c)))) for c in combos]

    def _named(self, values: dict[str, Any]) -> set[tuple[str, str]]:
        out = set()
        text = "\n".join(str(v) for v in values.values())
        for attribute in self.minimums:
            if attribute in self.lexicon.attributes:
                out.update((attribute, g) for g in self.lexicon.groups(text, attribute))
            elif attribute in values:
                out.add((attribute, str(values[attribute])))
        return out
