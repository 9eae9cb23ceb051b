"""The run's one funnel: a section per stage, changed only through its methods, added up at the end.

Sections: `generation` (what the run itself drops: unparseable answers, copies of seed tasks,
tasks that got no instance or response, or none because the budget ran out, conversations with a
failed turn), `instructions` and `records` (what each filter chain drops; the chains count into
their section, and what a record target leaves out counts as `target: over_target`), and `turns`
(what the record filters said of each later turn of a conversation: its candidates are turns, so
it is not added up; a failed turn is counted as the conversation's drop or shortening). At the end
of a run, candidates = kept + every drop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from filters.base import Drop, Funnel
from generator.core.records import Record


class RunFunnel:
    def __init__(self) -> None:
        self.generation = Funnel()
        self.instructions = Funnel()  # the instruction chain's
        self.records = Funnel()  # the record chain's
        self.turns = Funnel()  # the per-turn chain's (turns, not conversations)

    def mask_with(self, mask: Callable[[Any], Any] | None) -> None:
        """Mask every example and rejected row of every section (a run with private sources)."""
        for part in (self.generation, self.instructions, self.records, self.turns):
            part.mask = mask

    def reject(self, record: Record, stage: str, reason: str, **detail: Any) -> None:
        """A candidate dropped before any filter saw it (`parse`, `bootstrap`)."""
        self.generation.candidates += 1
        self.generation.add_drop(Drop(record, stage, reason, detail))

    def skip_source(self, source: str, reason: str) -> None:
        """An input the method could not read and skipped (`documents.on_bad_file: skip`): counted as
        a candidate dropped at stage `sources`, shown by its name."""
        self.reject(Record(instruction=source), "sources", reason)

    def drop_task(self, record: Record, reason: str, stage: str = "instances", **detail: Any) -> None:
        """An accepted instruction that got no instance or response, or no preference pair (stage
        `preferences`); it is already a candidate."""
        self.generation.add_drop(Drop(record, stage, reason, detail))

    def drop_conversation(self, record: Record, reason: str, **detail: Any) -> None:
        """A kept record whose conversation failed a later turn (`generation.turn_failure: drop`)."""
        self.generation.add_drop(Drop(record, "turns", reason, detail))

    def shorten(self, reason: str) -> None:
        """A conversation kept without the turn that failed and those after it (`truncate`)."""
        self.generation.shortened["turns"][reason] += 1

    def over_target(self, record: Record) -> None:
        """An instruction the filters kept, past the pool's target."""
        self.instructions.unkeep(Drop(record, "bootstrap", "over_target"))

    def unfinished(self, record: Record) -> None:
        """An accepted instruction left without its output because the budget ran out."""
        self.generation.add_drop(Drop(record, "budget", "not_completed"))

    def unneeded(self, record: Record) -> None:
        """An accepted instruction not completed: the record target was met without it."""
        self.instructions.unkeep(Drop(record, "target", "over_target"))

    def quota_full(self, record: Record) -> None:
        """A finished record whose category already holds its quota's share of the record target."""
        self.records.unkeep(Drop(record, "target", "quota_full"))

    def balance_reserved(self, record: Record) -> None:
        """A finished record that would take room the unmet minimums of `generation.balance` need."""
        self.records.unkeep(Drop(record, "target", "balance_reserved"))

    def trimmed(self, record: Record) -> None:
        """A finished record past the record target, cut so the dataset holds exactly the target."""
        self.records.unkeep(Drop(record, "target", "over_target"))

    def total(self, kept: int) -> Funnel:
        """The run's funnel as written to funnel.json and the card: `kept` final records."""
        out = Funnel(candidates=self.generation.candidates + self.instructions.candidates, kept=kept)
        for part in (self.generation, self.instructions, self.records):
            out.merge_drops(part)
        return out
