"""The generation methods. Each is a function that says what to ask for in one round of the
shared rounds loop (`generator.run.rounds.grow_pool`): `method(run, pool, round, need) -> asks`.

A new method is a function here and a name in `METHODS` (and in `GenerationConfig.method`).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from generator.core.records import Record
from generator.prompting.seeds import SeedTask
from generator.prompting.templates import PromptTemplate
from generator.run.context import Run
from generator.run.steer import combo_weights, steered_demonstrations


@dataclass(frozen=True)
class Ask:
    """One request a method wants sent: a template and its variables (a chat request), or with no
    template a raw `prompt` for the completions API (Magpie) and its request `params`, the
    variables then only telling requests apart; and meta for the record."""

    template: PromptTemplate | None
    variables: dict[str, Any]
    meta: dict[str, Any]
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def parser(self) -> str:
        """How the answer is read: the template's parser; a raw prompt's answer is a user turn."""
        if self.template is None:
            return "magpie_query"
        assert self.template.meta.parser is not None  # roles' templates have one (prompting.roles)
        return self.template.meta.parser


# The pool is a list of records or a `generator.run.pool.Pool`: read by length, index and slice.
Method = Callable[[Run, Sequence[Record], int, int], list[Ask]]


def _rng(*parts: Any) -> random.Random:
    return random.Random(zlib.crc32(repr(parts).encode()))


# Requests per round when `generation.requests_per_round` is null.
REQUESTS_PER_ROUND = 256


def requests_per_round(run: Run, need: int, per_request: int) -> int:
    """Ask for more than needed: many candidates are filtered out, and a request costs little.
    Capped by a setting in the fingerprint, never by the engine's: what is sent must not change
    when the concurrency does."""
    g = run.config.generation
    cap = g.requests_per_round or REQUESTS_PER_ROUND
    return max(1, min(cap, math.ceil(need * g.overgenerate / per_request)))


def demonstrations(run: Run, pool: Sequence[Record], rng: random.Random) -> tuple[list[Any], list[str]]:
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

    def method(run: Run, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
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


def evol_instruct(run: Run, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
    """Evolves instructions of the previous generation (seeds first) in depth or breadth."""
    ops = run.config.generation.evol.operations
    # Each parent with the seed tasks it descends from (an evolved instruction keeps its parent's).
    parents = [(s.instruction, [s.id]) for s in run.seeds]
    rng = _rng("evol", rnd)
    # The parents to pick from: the last `need` of the pool, then the seeds (read when picked).
    recent = pool[-need:] if rnd and pool else []
    asks = []
    for i in range(requests_per_round(run, need, 1)):
        op = ops[i % len(ops)]
        pick = rng.randrange(len(recent) + len(parents))
        if pick < len(recent):
            parent, seed_ids = recent[pick].instruction, recent[pick].meta.get("seed_ids", [])
        else:
            parent, seed_ids = parents[pick - len(recent)]
        variables = {"instruction": parent}
        if op != "broaden":
            variables["operation"] = op
        template = run.templates["evol_breadth" if op == "broaden" else "evol_depth"]
        meta = {"stage": "instructions", "round": rnd, "evolution": op, "seed_ids": seed_ids}
        asks.append(Ask(template, variables, meta))
    return asks


def custom(run: Run, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
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
                {
                    "stage": "instructions",
                    "round": rnd,
                    "seed_ids": [d.id for d in demos],
                    "topic": topic,
                    "persona": persona,
                    "difficulty": difficulty,
                },
            )
        )
    return asks


def magpie(run: Run, pool: list[Record], rnd: int, need: int) -> list[Ask]:
    """The model writes instructions itself from its chat template's pre-query (no seeds, no
    instructions to it): `instructions_per_prompt` samples (`n`) per request, the system prompts
    and topics taken in turn."""
    g = run.config.generation
    m = g.magpie
    per = g.instructions_per_prompt
    asks = []
    for i in range(requests_per_round(run, need, per)):
        query = run.pre_queries[(rnd * 997 + i) % len(run.pre_queries)]
        params: dict[str, Any] = {
            "temperature": m.temperature,
            "top_p": m.top_p,
            "max_tokens": m.max_tokens,
            "n": per,
            "stop": [*query.stop, *run.config.sampling.stop],
            # The prompt is the rendered template, special tokens included: add none, and show the
            # ones the model writes so that a leaked template is seen.
            "add_special_tokens": False,
            "skip_special_tokens": False,
        }
        lineage = {k: v for k, v in (("system", query.system), ("topic", query.topic)) if v is not None}
        meta: dict[str, Any] = {"stage": "instructions", "round": rnd, **({"magpie": lineage} if lineage else {})}
        asks.append(Ask(None, {"round": rnd, "request": i}, meta, prompt=query.text, params=params))
    return asks


METHODS: dict[str, Method] = {
    "self_instruct": self_instruct,
    "alpaca_batch": alpaca_batch,
    "evol_instruct": evol_instruct,
    "custom": custom,
    "magpie": magpie,
}
