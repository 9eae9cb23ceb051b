"""What a run cost, per stage, over every session of its run directory, and what reaching its
record target is expected to cost (`instructforge generate --estimate`).

Requests and tokens per stage are counted from the stored results (`RunStore.costs`, counted as the
store indexes and appends them), so a resumed run counts each request once, whatever session sent
it. Seconds per stage are the wall-clock time the run spent sending that stage's requests, summed
over sessions in `spent.json` beside the budget's seconds (`generator.run.budget`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generator.config import BudgetConfig

OTHER = "other"  # the stage of a stored result whose request named none


@dataclass
class StageCost:
    """One stage's figures: requests with a stored result (failures included), tokens, seconds."""

    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def per_row(self, kept: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 2),
        }
        if kept:
            out["tokens_per_kept_row"] = round(self.tokens / kept, 1)
            out["seconds_per_kept_row"] = round(self.seconds / kept, 4)
        return out


@dataclass
class Costs:
    """Figures per stage (`instructions`, `classify`, `instances`, `response`, `filter`, ...)."""

    stages: dict[str, StageCost] = field(default_factory=dict)

    def stage(self, name: str | None) -> StageCost:
        return self.stages.setdefault(name or OTHER, StageCost())

    def add_result(self, stage: str | None, ok: bool, prompt_tokens: int, completion_tokens: int) -> None:
        s = self.stage(stage)
        s.requests += 1
        s.failed += 0 if ok else 1
        s.prompt_tokens += prompt_tokens
        s.completion_tokens += completion_tokens

    def add_seconds(self, stage: str | None, seconds: float) -> None:
        self.stage(stage).seconds += seconds

    def seconds(self) -> dict[str, float]:
        return {name: round(s.seconds, 3) for name, s in self.stages.items() if s.seconds}

    def load_seconds(self, seconds: dict[str, Any]) -> None:
        """Earlier sessions' seconds per stage (from `spent.json`)."""
        for name, value in seconds.items():
            if isinstance(value, (int, float)):
                self.stage(name).seconds = float(value)

    @property
    def total(self) -> StageCost:
        t = StageCost()
        for s in self.stages.values():
            t.requests += s.requests
            t.failed += s.failed
            t.prompt_tokens += s.prompt_tokens
            t.completion_tokens += s.completion_tokens
            t.seconds += s.seconds
        return t

    def to_dict(self, kept: int) -> dict[str, Any]:
        """For engine_stats.json, the card and the report: each stage and the total, per kept row."""
        return {
            "kept_rows": kept,
            "stages": {name: s.per_row(kept) for name, s in sorted(self.stages.items())},
            "total": self.total.per_row(kept),
        }


@dataclass
class Estimate:
    """What the rows still wanted will cost, at the yield and rates observed so far."""

    target: int
    kept: int
    spent: StageCost
    remaining: StageCost
    cost: float | None = None  # with a price in the budget: of the whole run

    @property
    def total(self) -> StageCost:
        s, r = self.spent, self.remaining
        return StageCost(
            s.requests + r.requests,
            s.failed + r.failed,
            s.prompt_tokens + r.prompt_tokens,
            s.completion_tokens + r.completion_tokens,
            s.seconds + r.seconds,
        )

    def summary(self) -> str:
        t, r = self.total, self.remaining
        lines = [
            f"estimate for {self.target} records (from {self.kept} kept so far, "
            f"{self.spent.requests} requests, {self.spent.tokens} tokens, {self.spent.seconds:.0f} s sending):",
            f"  still to go: about {r.requests} requests, {r.tokens} tokens, {_duration(r.seconds)}",
            f"  whole run:   about {t.requests} requests, {t.tokens} tokens, {_duration(t.seconds)}",
        ]
        if self.cost is not None:
            lines.append(f"  cost of the whole run: about {self.cost:.2f}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Pricing:
    """What a GPU-hour and a million tokens cost (`budget`), for `gpus` GPUs."""

    budget: BudgetConfig
    gpus: int | None

    def of(self, tokens: int, seconds: float) -> float | None:
        return price(tokens, seconds, self.gpus, self.budget)


def estimate(
    costs: Costs, kept: int, target: int, pricing: Pricing, margins: dict[str, float] | None = None
) -> Estimate | None:
    """The cost of `target` rows from what `kept` rows cost so far, stage by stage; `margins` are
    the stages the run asks more of than the yield predicts (the record target's refills make
    `REFILL_MARGIN` more instructions). None before the first kept row."""
    if kept <= 0:
        return None
    scale = max(0, target - kept) / kept
    remaining = StageCost()
    for name, s in costs.stages.items():
        f = scale * (margins or {}).get(name, 1.0)
        remaining.requests += math.ceil(s.requests * f)
        remaining.failed += math.ceil(s.failed * f)
        remaining.prompt_tokens += math.ceil(s.prompt_tokens * f)
        remaining.completion_tokens += math.ceil(s.completion_tokens * f)
        remaining.seconds += s.seconds * f
    out = Estimate(target, kept, costs.total, remaining)
    total = out.total
    out.cost = pricing.of(total.tokens, total.seconds)
    return out


def price(tokens: int, seconds: float, gpus: int | None, budget: BudgetConfig) -> float | None:
    """Money for `tokens` and `seconds` on `gpus` GPUs at the budget's prices (GPU-hours billed only
    when the GPUs are known); None when the budget sets no price."""
    if budget.price_per_gpu_hour is None and budget.price_per_million_tokens is None:
        return None
    cost = tokens / 1e6 * (budget.price_per_million_tokens or 0.0)
    if budget.price_per_gpu_hour is not None and gpus:
        cost += seconds / 3600 * gpus * budget.price_per_gpu_hour
    return cost


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
