"""Evol-Instruct (Xu et al., 2023): instructions of the previous generation (seeds first) rewritten
in depth (harder) or breadth (a new task in the same domain)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from generator.core.records import Record
from generator.core.section import Section
from generator.methods.base import Ask, Method, Role, requests_per_round, rng_for


class EvolConfig(Section):
    operations: list[Literal["add_constraints", "deepen", "concretize", "add_reasoning", "broaden"]] = Field(
        default_factory=lambda: ["add_constraints", "deepen", "concretize", "add_reasoning", "broaden"],
        min_length=1,
        description="Evolutions applied in turn (`broaden` is in-breadth).",
    )


class EvolInstruct(Method):
    name = "evol_instruct"
    summary = (
        "rewrites instructions into harder (in depth) or broader (in breadth) ones, generation after "
        "generation from the seeds (depth for a reasoning set)"
    )
    example = "evol-instruct.yaml"
    section = "evol"
    config = EvolConfig
    roles = {
        "evol_depth": Role(
            "evol_deepen", "Evol-Instruct: make an instruction harder.", frozenset({"instruction", "operation"})
        ),
        "evol_breadth": Role(
            "evol_broaden", "Evol-Instruct: a new task in the same domain.", frozenset({"instruction"})
        ),
    }

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        ops = self.inputs.section.operations
        # Each parent with the seed tasks it descends from (an evolved instruction keeps its parent's).
        parents = [(s.instruction, [s.id]) for s in self.inputs.seeds]
        rng = rng_for("evol", rnd)
        # The parents to pick from: the last `need` of the pool, then the seeds (read when picked).
        recent = pool[-need:] if rnd and pool else []
        asks = []
        for i in range(requests_per_round(self.inputs.settings, need, 1)):
            op = ops[i % len(ops)]
            pick = rng.randrange(len(recent) + len(parents))
            if pick < len(recent):
                parent, seed_ids = recent[pick].instruction, recent[pick].meta.get("seed_ids", [])
            else:
                parent, seed_ids = parents[pick - len(recent)]
            variables = {"instruction": parent}
            if op != "broaden":
                variables["operation"] = op
            template = self.inputs.templates["evol_breadth" if op == "broaden" else "evol_depth"]
            meta = {"stage": "instructions", "round": rnd, "evolution": op, "seed_ids": seed_ids}
            asks.append(Ask(template, variables, meta))
        return asks
