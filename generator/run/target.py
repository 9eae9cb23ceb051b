"""The record target (`generation.num_records`): rows in the dataset, each past every filter and
dedup. The run reaches it in refills: grow the instruction pool, complete and filter the new
instructions, count the kept rows; then another refill, sized from the yield so far, until the
target is met, a budget is spent, the rounds run out, or refills stop adding rows.

Every decision here is taken from counts of processed results, never from timing, so a resumed run
replays the same refills from the stored results and sends exactly what is missing. Without a
target the run makes one refill of `num_instructions` instructions, as it always did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from generator.config import GenerationConfig
from generator.core.records import Record
from generator.run.balance import Balance
from generator.run.budget import Budget
from generator.run.funnel import RunFunnel
from generator.run.quota import Quotas
from generator.run.rounds import PoolResult

# Later refills ask for this much more than the yield so far predicts: a refill that falls short
# costs another refill (rounds and completions in turn), a surplus only the requests it took.
REFILL_MARGIN = 1.2


@dataclass
class Stop:
    """Why the run stopped. `kind`: `target` (num_records met), `pool` (num_instructions made,
    without a record target), `max_rounds`, `stall`, `budget`."""

    kind: str
    reason: str
    budget: str | None = None  # the budget limit that stopped it: `max_requests`, ...


@dataclass
class Refill:
    instructions: int  # added to the pool by this refill
    completed: int  # instructions completed and filtered (the rest were not needed)
    kept: int  # rows kept (before the cut at the target)


@dataclass
class Target:
    records: int | None  # None: no record target
    first: int  # the first refill (num_instructions)
    stall_refills: int
    quotas: Quotas | None = None  # generation.quotas: their counts span refills
    balance: Balance | None = None  # generation.balance: its counts span refills too
    kept: int = 0
    completed: int = 0
    refills: list[Refill] = field(default_factory=list)
    stalled: int = 0  # refills in a row that added no row
    pending: int = 0  # rows admitted in the refill under way (counted in `kept` when it ends)

    @classmethod
    def of(cls, g: GenerationConfig, balance: Balance | None = None) -> Target:
        quotas = Quotas(g.quotas, g.num_records) if g.quotas and g.num_records else None
        return cls(g.num_records, g.num_instructions, g.stall_rounds, quotas, balance)

    @property
    def room(self) -> int | None:
        """Rows still wanted; None without a target."""
        return None if self.records is None else max(0, self.records - self.kept - self.pending)

    def admit(self, records: list[Record], funnel: RunFunnel) -> list[Record]:
        """What of `records` (in order) the dataset takes: a row whose quota is full is dropped
        (`quota_full`) before it takes room, and the rows past the room left are cut (`trimmed`).
        With `generation.balance`, a row that would take room its unmet minimums need is dropped
        (`balance_reserved`)."""
        if self.balance is not None:
            return self._admit_balanced(records, funnel, self.balance)
        if self.quotas is not None:
            records = self.quotas.admit(records, funnel)
        room = self.room
        if room is not None:
            for record in records[room:]:
                funnel.trimmed(record)
            records = records[:room]
        self.pending += len(records)
        return records

    def _admit_balanced(self, records: list[Record], funnel: RunFunnel, balance: Balance) -> list[Record]:
        out: list[Record] = []
        for r in records:
            room = self.room or 0  # balance needs a record target
            if self.quotas is not None and not self.quotas.fits(r):
                funnel.quota_full(r)
            elif room == 0:
                funnel.trimmed(r)
            elif not balance.fits(r, room):
                funnel.balance_reserved(r)
            else:
                if self.quotas is not None:
                    self.quotas.take(r)
                balance.take(r)
                self.pending += 1
                out.append(r)
        return out

    def pool_size(self, pool: int) -> int:
        """The pool's size to grow to in the next refill: `num_instructions` first; then, for the
        rows still wanted, the instructions the yield so far (rows per completed instruction)
        predicts, with a margin. With no row yet, another `num_instructions`."""
        if not self.refills or self.records is None or self.kept == 0:
            return pool + self.first
        per_row = self.completed / self.kept
        need = (self.records - self.kept) * per_row
        if self.balance is not None:  # enough for the rarest short group too, at its own yield
            need = max(need, self.balance.instructions_for_minimums(self.completed) or 0)
        return pool + max(1, math.ceil(need * REFILL_MARGIN))

    def add(self, instructions: int, completed: int) -> None:
        """End a refill: `instructions` added to the pool, `completed` of them completed; its rows
        are the ones `admit` took."""
        kept, self.pending = self.pending, 0
        self.refills.append(Refill(instructions, completed, kept))
        self.completed += completed
        self.kept += kept
        self.stalled = 0 if kept else self.stalled + 1

    def stop(self, pool: PoolResult, budget: Budget | None) -> Stop | None:
        """Why the run stops after the last refill, or None to refill again. A target met when a
        budget limit is reached too wins: the dataset is whole."""
        if self.records is not None and self.kept >= self.records:
            return Stop("target", f"target reached: {self.records} records")
        if budget is not None and budget.stopped is not None:
            return self._unbalanced(Stop("budget", budget.reason(), budget.stopped))
        if self.records is None:
            if pool.stop_kind == "full":
                return Stop("pool", f"num_instructions reached: {self.first} instructions")
            return Stop(pool.stop_kind, pool.stop_reason)
        if pool.stop_kind in ("max_rounds", "stall"):
            return self._unbalanced(Stop(pool.stop_kind, pool.stop_reason))
        if self.stalled >= self.stall_refills:
            return self._unbalanced(Stop("stall", f"no new record in {self.stalled} refills"))
        return None

    def _unbalanced(self, stop: Stop) -> Stop:
        """A stop before the target names the balance minimums still unmet."""
        unmet = self.balance.unmet() if self.balance is not None else []
        if unmet:
            stop.reason += f"; balance minimums not met: {', '.join(unmet)}"
        return stop

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_records": self.records,
            "kept": self.kept,
            "refills": [asdict(r) for r in self.refills],
            **({"balance": self.balance.to_dict()} if self.balance is not None else {}),
        }
