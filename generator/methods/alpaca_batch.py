"""Alpaca (Taori et al., 2023): whole tasks (instruction, input, output), many per call, from seed
demonstrations."""

from __future__ import annotations

from collections.abc import Sequence

from generator.core.records import Record
from generator.methods.base import Ask, Method, Role, demonstrations, requests_per_round, rng_for


class AlpacaBatch(Method):
    name = "alpaca_batch"
    summary = (
        "writes whole tasks (instruction, input, output) many per call from seed demonstrations, cheapest "
        "per row; the completion stage keeps their outputs"
    )
    example = "alpaca-batch.yaml"
    roles = {
        "batch": Role(
            "alpaca_batch", "Complete tasks, many per call (alpaca_batch).", frozenset({"demonstrations", "num_tasks"})
        )
    }
    steerable = True

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        per = self.inputs.settings.instructions_per_prompt
        template = self.inputs.templates["batch"]
        asks = []
        for i in range(requests_per_round(self.inputs.settings, need, per)):
            demos, ids = demonstrations(self.inputs, pool, rng_for("alpaca", rnd, i, len(pool)))
            # Only seed tasks carry an output to show; with none drawn, the first three seeds.
            demos = [d for d in demos if not isinstance(d, dict)] or self.inputs.seeds[:3]
            meta = {"stage": "instructions", "round": rnd, "seed_ids": ids}
            asks.append(Ask(template, {"demonstrations": demos, "num_tasks": per}, meta))
        return asks
