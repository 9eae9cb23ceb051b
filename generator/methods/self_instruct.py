"""Self-instruct (Wang et al., 2023): new instructions from seed and pool demonstrations."""

from __future__ import annotations

from collections.abc import Sequence

from generator.core.records import Record
from generator.methods.base import Ask, Method, Role, demonstrations, requests_per_round, rng_for


class SelfInstruct(Method):
    name = "self_instruct"
    summary = (
        "grows a pool from your seed tasks (the seeds set the domain and style; the default): each request "
        "shows `num_demonstrations` seed tasks and pool instructions and asks for `instructions_per_prompt` new ones"
    )
    example = "default.yaml"
    roles = {
        "instructions": Role(
            "self_instruct", "New instructions from demonstrations.", frozenset({"demonstrations", "num_instructions"})
        )
    }
    steerable = True
    steered_by_default = True

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        per = self.inputs.settings.instructions_per_prompt
        template = self.inputs.templates["instructions"]
        asks = []
        for i in range(requests_per_round(self.inputs.settings, need, per)):
            demos, seed_ids = demonstrations(self.inputs, pool, rng_for("self_instruct", rnd, i, len(pool)))
            meta = {"stage": "instructions", "round": rnd, "seed_ids": seed_ids}
            asks.append(Ask(template, {"demonstrations": demos, "num_instructions": per}, meta))
        return asks
