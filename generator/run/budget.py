"""What a run may spend (`budget:` in the config) and what it has spent, over every session of
its run directory.

Requests and tokens are read from the stored results (the store counts them as it indexes and
appends, `RunStore.costs`), so a resume starts from what earlier sessions spent; requests handed to
the engine whose results are not stored yet count too. Wall-clock seconds are summed over sessions in
`spent.json`, rewritten every few seconds while the run goes on (a killed session loses at most
that much). GPU-hours are seconds x the server's GPUs; money is GPU-hours and tokens at their prices.

The sender asks `check()` before it hands each request to the engine, and arms `seconds_left()`
as a timer for the limits that time alone reaches; the first limit reached is kept in `stopped`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.config import BudgetConfig, Config
from generator.core.errors import ConfigError
from generator.core.files import write_json
from generator.run.cost import Costs, price

SPENT = "spent.json"
# The limits, in the order they are checked (and named in a stop reason).
LIMITS = ("max_requests", "max_tokens", "max_time_s", "max_gpu_hours", "max_cost")
SAVE_EVERY_S = 5.0  # how often the session's seconds are written to spent.json
_PP = re.compile(r"^(?:--pipeline-parallel-size|-pp)(?:=(\d+))?$")


def server_gpus(config: Config) -> int | None:
    """GPUs the run's server holds: `budget.gpus`, else the managed server's parallel sizes on a
    GPU (0 on CPU); None for external endpoints, which the run cannot see."""
    if config.budget.gpus is not None:
        return config.budget.gpus
    s = config.server
    if s.endpoints:
        return None
    gpu = {"gpu": True, "cpu": False}.get(s.device)
    if gpu is None:
        from generator.llm.server import has_gpu

        gpu = has_gpu()
    if not gpu:
        return 0
    return s.tensor_parallel_size * s.data_parallel_size * _pipeline_size(s.extra_args)


def _pipeline_size(args: list[str]) -> int:
    for i, arg in enumerate(args):
        if m := _PP.match(arg):
            value = m.group(1) or (args[i + 1] if i + 1 < len(args) else "1")
            return int(value) if value.isdigit() else 1
    return 1


def check_budget(config: Config) -> int | None:
    """The GPUs the budget bills (None when no limit or price needs them); a limit that cannot
    work is a `ConfigError` now, before any server starts."""
    b = config.budget
    if b.max_gpu_hours is None and b.price_per_gpu_hour is None:
        return None
    gpus = server_gpus(config)
    if gpus is None:
        raise ConfigError(
            "budget: GPU-hours need the number of GPUs behind server.endpoints; set budget.gpus "
            "(or use budget.max_time_s)"
        )
    if gpus == 0 and b.max_gpu_hours is not None:
        raise ConfigError(
            "budget.max_gpu_hours: the managed server runs on CPU and holds no GPU, so the limit "
            "would never be reached; set budget.gpus to bill it as GPUs, or use budget.max_time_s"
        )
    return gpus


@dataclass
class Spent:
    requests: int
    tokens: int
    seconds: float
    gpu_hours: float | None
    cost: float | None


class Budget:
    """The run's limits against what it has spent. `fresh` forgets earlier sessions' seconds."""

    def __init__(
        self, limits: BudgetConfig, gpus: int | None, run_dir: Path, costs: Costs, *, fresh: bool = False
    ) -> None:
        self.limits = limits
        self.gpus = gpus
        self.path = Path(run_dir) / SPENT
        self.costs = costs  # the store's figures per stage; their seconds are kept here, in spent.json
        self.in_flight = 0  # requests handed to the engine whose results are not stored yet
        spent = {} if fresh else _read(self.path)
        self.earlier_s = float(spent.get("seconds", 0.0))
        costs.load_seconds(spent.get("stages", {}))
        self.started = time.monotonic()
        self._saved = self.started
        self.stopped: str | None = None  # the limit that stopped the run: "max_requests", ...

    @property
    def limited(self) -> bool:
        return any(getattr(self.limits, key) is not None for key in LIMITS)

    def seconds(self) -> float:
        return self.earlier_s + time.monotonic() - self.started

    def spent(self) -> Spent:
        stored = self.costs.total
        seconds = self.seconds()
        hours = None if self.gpus is None else seconds / 3600 * self.gpus
        cost = price(stored.tokens, seconds, self.gpus, self.limits)
        return Spent(stored.requests + self.in_flight, stored.tokens, seconds, hours, cost)

    def reached(self) -> str | None:
        """The first limit reached, by its key, or None."""
        s = self.spent()
        used = dict(zip(LIMITS, (s.requests, s.tokens, s.seconds, s.gpu_hours, s.cost)))
        for key in LIMITS:
            limit = getattr(self.limits, key)
            if limit is not None and used[key] is not None and used[key] >= limit:
                return key
        return None

    def check(self) -> bool:
        """True once a limit is reached (and from then on: the run sends nothing more)."""
        if self.stopped is None:
            self.stopped = self.reached()
        if time.monotonic() - self._saved >= SAVE_EVERY_S:
            self.save()
        return self.stopped is not None

    def seconds_left(self) -> float | None:
        """Seconds until a limit that time alone reaches (time, GPU-hours, money through GPU-hours);
        None when no such limit is set."""
        b, s = self.limits, self.spent()
        left = []
        if b.max_time_s is not None:
            left.append(b.max_time_s - s.seconds)
        if b.max_gpu_hours is not None and self.gpus:
            left.append((b.max_gpu_hours - (s.gpu_hours or 0.0)) * 3600 / self.gpus)
        if b.max_cost is not None and b.price_per_gpu_hour and self.gpus:
            per_s = b.price_per_gpu_hour * self.gpus / 3600
            left.append((b.max_cost - (s.cost or 0.0)) / per_s)
        return max(0.0, min(left)) if left else None

    def add_request(self) -> None:
        """A request is handed to the engine."""
        self.in_flight += 1

    def settle(self) -> None:
        """A request handed to the engine has its result stored (the store counts it from now)."""
        self.in_flight -= 1

    def reason(self) -> str:
        """The stop reason for the limit that stopped the run: `budget max_requests reached (...)`."""
        key = self.stopped
        s = self.spent()
        used = {
            "max_requests": f"{s.requests} requests",
            "max_tokens": f"{s.tokens} tokens",
            "max_time_s": f"{s.seconds:.1f} s",
            "max_gpu_hours": f"{s.gpu_hours or 0:.4f} GPU-hours",
            "max_cost": f"cost {s.cost or 0:.4f}",
        }.get(key or "", "")
        return f"budget {key} ({getattr(self.limits, key or '', None)}) reached: {used}"

    def save(self) -> None:
        self._saved = time.monotonic()
        data = {"seconds": round(self.seconds(), 3), "stages": self.costs.seconds()}
        write_json(self.path, data, newline=True, indent=2)

    def to_dict(self) -> dict[str, Any]:
        """For rounds.json and the card: the limits set, what was spent, what stopped the run."""
        s = self.spent()
        limits = {k: v for k, v in self.limits.model_dump().items() if v is not None}
        spent: dict[str, Any] = {"requests": s.requests, "tokens": s.tokens, "seconds": round(s.seconds, 1)}
        if s.gpu_hours is not None:
            spent["gpu_hours"] = round(s.gpu_hours, 4)
        if s.cost is not None:
            spent["cost"] = round(s.cost, 4)
        return {"limits": limits, "spent": spent, "stopped_by": self.stopped}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        float(data.get("seconds", 0.0))
    except (OSError, ValueError, AttributeError, TypeError):
        return {}  # missing or torn: this session counts from zero
    return data if isinstance(data.get("stages", {}), dict) else {"seconds": data.get("seconds", 0.0)}
