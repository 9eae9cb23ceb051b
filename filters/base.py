"""The filter protocol, the chain that runs filters in order, and the funnel that counts drops."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.core.files import write_json
from generator.core.records import Record

KEEP_EXAMPLES = 3


@dataclass(frozen=True)
class Verdict:
    """A filter's judgement on one record.

    `reason` is a stable snake_case code when the record is dropped. `record` is set when the
    filter rewrote the record it keeps (PII redaction, for example); later filters see the rewrite.
    """

    keep: bool
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    record: Record | None = None
    detail: dict[str, Any] = field(default_factory=dict)


KEEP = Verdict(keep=True)


def drop(reason: str, **detail: Any) -> Verdict:
    return Verdict(keep=False, reason=reason, detail=detail)


BatchChat = Callable[[list[list[dict[str, str]]], dict[str, Any]], list["str | None"]]
"""Sends many chat requests (each a list of messages; the dict adds request fields such as
`response_format` or `max_tokens`) to the served LLM and returns each completion's text, None
where a request failed. The pipeline provides it; filters never talk to a server themselves."""


@dataclass
class FilterContext:
    """What the pipeline hands a filter before the first batch."""

    state_dir: Path | None = None  # where a stateful filter keeps what must survive a resume
    chat: BatchChat | None = None  # the served LLM, for filters that ask it (judges)
    template_tokens: tuple[str, ...] = ()  # the served model's chat template tokens (Magpie's leak check)


class Filter(ABC):
    """Judges a batch of records, one verdict per record, in order."""

    name: str = "filter"

    def setup(self, ctx: FilterContext) -> None:  # noqa: B027 - optional hook
        """Called once before the first batch; stateful filters load saved state here."""

    @abstractmethod
    def judge(self, records: list[Record]) -> list[Verdict]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Called when the run ends or stops; stateful filters save their state and reports here."""


@dataclass
class Drop:
    record: Record
    filter: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Funnel:
    """Candidates in, drops per filter and reason, kept out, with a few examples of each drop.

    `redactions` counts spans that a filter rewrote in records it kept, per filter and kind
    (a kept verdict reports them as `detail["redactions"] = {kind: count}`); `shortened` counts
    records kept shorter than asked, per stage and reason (a conversation ended before its last turn)."""

    candidates: int = 0
    kept: int = 0
    drops: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    redactions: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    shortened: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Pass rates of the verifiable checks (`constraints`, `schema`): per check {checked, passed}, and
    for constraints per type too (`types`)."""
    # Applied to every example and rejected row before it is kept or written: a run with private
    # sources masks their text (generator/run/privacy.py).
    mask: Callable[[Any], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def dropped(self) -> int:
        return sum(sum(c.values()) for c in self.drops.values())

    def add_drop(self, d: Drop) -> None:
        self.drops[d.filter][d.reason] += 1
        key = f"{d.filter}/{d.reason}"
        if len(self.examples[key]) < KEEP_EXAMPLES:
            example = {
                "instruction": d.record.instruction,
                "input": d.record.input,
                "output": d.record.output,
                **d.detail,
            }
            self.examples[key].append(self.mask(example) if self.mask else example)

    def unkeep(self, d: Drop) -> None:
        """A record counted as kept is dropped after all (over a target, for instance)."""
        self.kept -= 1
        self.add_drop(d)

    def merge(self, other: Funnel) -> None:
        self.candidates += other.candidates
        self.kept += other.kept
        self.merge_drops(other)

    def merge_drops(self, other: Funnel) -> None:
        """Add another funnel's drops and examples, not its candidates or kept counts."""
        for name, reasons in other.drops.items():
            self.drops[name].update(reasons)
        for name, kinds in other.redactions.items():
            self.redactions[name].update(kinds)
        for name, reasons in other.shortened.items():
            self.shortened[name].update(reasons)
        for key, examples in other.examples.items():
            room = KEEP_EXAMPLES - len(self.examples[key])
            self.examples[key].extend(examples[: max(room, 0)])
        self.checks = add_counts(self.checks, other.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "kept": self.kept,
            "dropped": self.dropped,
            "drops": {name: dict(reasons) for name, reasons in self.drops.items()},
            "examples": dict(self.examples),
            "redactions": {name: dict(kinds) for name, kinds in self.redactions.items()},
            **({"shortened": {name: dict(r) for name, r in self.shortened.items()}} if self.shortened else {}),
            **({"checks": self.checks} if self.checks else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Funnel:
        funnel = cls(candidates=data["candidates"], kept=data["kept"])
        for name, reasons in data.get("drops", {}).items():
            funnel.drops[name].update(reasons)
        for key, examples in data.get("examples", {}).items():
            funnel.examples[key].extend(examples)
        for name, kinds in data.get("redactions", {}).items():
            funnel.redactions[name].update(kinds)
        for name, reasons in data.get("shortened", {}).items():
            funnel.shortened[name].update(reasons)
        funnel.checks = data.get("checks", {})
        return funnel

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict(), indent=2, ensure_ascii=False)


def add_counts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two nests of counts added key by key (the pass rates of shards, merged)."""
    out = dict(a)
    for key, value in b.items():
        out[key] = add_counts(out.get(key, {}), value) if isinstance(value, dict) else out.get(key, 0) + value
    return out


@dataclass
class ChainResult:
    kept: list[Record]
    dropped: list[Drop]


class Chain:
    """Filters in order, cheapest first: each filter sees only what the ones before it kept."""

    def __init__(self, filters: Iterable[Filter], funnel: Funnel | None = None, rejected_path: Path | None = None):
        self.filters = list(filters)
        self.funnel = funnel if funnel is not None else Funnel()
        self.rejected_path = rejected_path

    def run(self, records: list[Record]) -> ChainResult:
        self.funnel.candidates += len(records)
        alive = list(records)
        dropped: list[Drop] = []
        for flt in self.filters:
            if not alive:
                break
            alive = self._apply(flt, alive, dropped)
        self.funnel.kept += len(alive)
        for d in dropped:
            self.funnel.add_drop(d)
        if self.rejected_path is not None and dropped:
            self._write_rejected(dropped)
        return ChainResult(kept=alive, dropped=dropped)

    def _apply(self, flt: Filter, alive: list[Record], dropped: list[Drop]) -> list[Record]:
        """One filter over the records still alive: its survivors (rewritten, with its scores in
        `meta.scores`); its drops are added to `dropped`."""
        verdicts = flt.judge(alive)
        if len(verdicts) != len(alive):
            raise RuntimeError(f"filter {flt.name!r} returned {len(verdicts)} verdicts for {len(alive)} records")
        survivors = []
        for record, verdict in zip(alive, verdicts):
            if not verdict.keep:
                dropped.append(Drop(record, flt.name, verdict.reason, verdict.detail))
                continue
            kept = verdict.record or record
            if verdict.detail.get("redactions"):
                self.funnel.redactions[flt.name].update(verdict.detail["redactions"])
            if verdict.scores:
                kept = kept.with_meta(scores={**kept.meta.get("scores", {}), **verdict.scores})
            survivors.append(kept)
        return survivors

    def _write_rejected(self, dropped: list[Drop]) -> None:
        assert self.rejected_path is not None
        mask = self.funnel.mask
        with self.rejected_path.open("a", encoding="utf-8") as f:
            for d in dropped:
                row = {"filter": d.filter, "reason": d.reason, **d.detail, "record": d.record.to_row()}
                f.write(json.dumps(mask(row) if mask else row, ensure_ascii=False) + "\n")
