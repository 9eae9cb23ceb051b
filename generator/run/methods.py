"""The generation methods. Each is a function that says what to ask for in one round of the
shared rounds loop (`generator.run.rounds.grow_pool`): `method(run, pool, round, need) -> asks`.

A new method is a function here and a name in `METHODS` (and in `GenerationConfig.method`).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from generator.core.records import Record
from generator.prompting.seeds import SeedTask
from generator.prompting.templates import PromptTemplate
from generator.run.context import Run
from generator.run.steer import combo_weights, steered_demonstrations


@dataclass(frozen=True)
class Ask:
    """One request a method wants sent: a template, its variables, and meta for the record."""

    template: PromptTemplate
    variables: dict[str, Any]
    meta: dict[str, Any]


Method = Callable[[Run, list[Record], int, int], list[Ask]]


def _rng(*parts: Any) -> random.Random:
    return random.Random(zlib.crc32(repr(parts).encode()))


def requests_per_round(run: Run, need: int, per_request: int) -> int:
    # Ask for more than needed: many candidates are filtered out, and a request costs little.
    g = run.config.generation
    return max(1, min(run.config.engine.concurrency, math.ceil(need * g.overgenerate / per_request)))


def demonstrations(run: Run, pool: list[Record], rng: random.Random) -> tuple[list[Any], list[str]]:
    """Seed tasks and (a `machine_ratio` share) pool instructions to show, and the seeds' ids."""
    g = run.config.generation
    k = g.num_demonstrations
    n_machine = min(len(pool), round(k * g.machine_ratio))
    n_seeds = min(k - n_machine, len(run.seeds))
    if run.steer is not None:  # toward under-covered regions (generator/run/steer.py)
        demos = steered_demonstrations(run.steer, run.seeds, pool, n_seeds, n_machine, rng)
    else:
        demos = rng.sample(run.seeds, n_seeds)
        demos += [{"instruction": r.instruction} for r in rng.sample(pool, n_machine)]
    rng.shuffle(demos)
    return demos, [d.id for d in demos if isinstance(d, SeedTask)]


def _from_demonstrations(role: str, tag: str, count: str, seeds_only: bool) -> Method:
    """A method that shows demonstrations and asks for `instructions_per_prompt` new items."""

    def method(run: Run, pool: list[Record], rnd: int, need: int) -> list[Ask]:
        per = run.config.generation.instructions_per_prompt
        asks = []
        for i in range(requests_per_round(run, need, per)):
            demos, seed_ids = demonstrations(run, pool, _rng(tag, rnd, i, len(pool)))
            if seeds_only:
                demos = [d for d in demos if isinstance(d, SeedTask)] or run.seeds[:3]
            asks.append(
                Ask(
                    run.templates[role],
                    {"demonstrations": demos, count: per},
                    {"stage": "instructions", "round": rnd, "seed_ids": seed_ids},
                )
            )
        return asks

    return method


# Self-instruct: new instructions from seed and pool demonstrations.
self_instruct = _from_demonstrations("instructions", "self_instruct", "num_instructions", seeds_only=False)
# Alpaca: complete tasks (instruction, input, output), many per call, from seed demonstrations.
alpaca_batch = _from_demonstrations("batch", "alpaca", "num_tasks", seeds_only=True)


def evol_instruct(run: Run, pool: list[Record], rnd: int, need: int) -> list[Ask]:
    """Evolves instructions of the previous generation (seeds first) in depth or breadth."""
    ops = run.config.generation.evol.operations
    parents = [s.instruction for s in run.seeds]
    rng = _rng("evol", rnd)
    src = parents if rnd == 0 or not pool else [r.instruction for r in pool[-need:]] + parents
    asks = []
    for i in range(requests_per_round(run, need, 1)):
        op = ops[i % len(ops)]
        variables = {"instruction": src[rng.randrange(len(src))]}
        if op != "broaden":
            variables["operation"] = op
        template = run.templates["evol_breadth" if op == "broaden" else "evol_depth"]
        asks.append(Ask(template, variables, {"stage": "instructions", "round": rnd, "evolution": op}))
    return asks


def custom(run: Run, pool: list[Record], rnd: int, need: int) -> list[Ask]:
    """Crosses topics x personas x difficulties x directives from the config."""
    c = run.config.generation.custom
    per = run.config.generation.instructions_per_prompt
    combos = [
        (t, p, d, x) for t in c.topics for p in c.personas for d in c.difficulties for x in (c.directives or [""])
    ]
    rng = _rng("custom", rnd)
    weights = combo_weights(run.steer, pool, combos) if run.steer is not None else None
    asks = []
    for i in range(requests_per_round(run, need, per)):
        if weights is None:
            topic, persona, difficulty, directive = combos[(rnd * 997 + i) % len(combos)]
            demos = rng.sample(run.seeds, min(2, len(run.seeds)))
        else:  # toward the topics and personas whose instructions sit in sparse regions
            [(topic, persona, difficulty, directive)] = rng.choices(combos, weights=weights)
            demos = steered_demonstrations(run.steer, run.seeds, pool, min(2, len(run.seeds)), 0, rng)
        asks.append(
            Ask(
                run.templates["custom"],
                {
                    "topic": topic,
                    "persona": persona,
                    "difficulty": difficulty,
                    "directive": directive,
                    "demonstrations": demos,
                    "num_instructions": per,
                },
                {"stage": "instructions", "round": rnd, "topic": topic, "persona": persona, "difficulty": difficulty},
            )
        )
    return asks


METHODS: dict[str, Method] = {
    "self_instruct": self_instruct,
    "alpaca_batch": alpaca_batch,
    "evol_instruct": evol_instruct,
    "custom": custom,
}
