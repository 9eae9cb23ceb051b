"""Custom: instructions for every crossing of the topics, personas, difficulties and directives the
config lists (coverage you can name)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from generator.core.records import Record
from generator.core.section import Section
from generator.methods.base import Ask, Method, Role, requests_per_round, rng_for


class CustomConfig(Section):
    topics: list[str] = Field(
        default_factory=lambda: ["everyday life"], min_length=1, description="Subjects the tasks are about."
    )
    personas: list[str] = Field(
        default_factory=lambda: ["a curious adult"], min_length=1, description="Who asks the tasks."
    )
    difficulties: list[str] = Field(
        default_factory=lambda: ["easy", "intermediate", "expert"], min_length=1, description="How hard the tasks are."
    )
    directives: list[str] = Field(
        default_factory=list, description="Edge cases or special requirements, crossed with the rest."
    )


BALANCED_KEYS = ("topic", "persona", "difficulty", "directive")  # a crossing's values, in order


class Custom(Method):
    name = "custom"
    summary = "aims at the topics x personas x difficulties x edge cases you list (coverage you can name)"
    example = "custom.yaml"
    section = "custom"
    config = CustomConfig
    roles = {
        "custom": Role(
            "custom",
            "Instructions for a topic, persona, difficulty, directive.",
            frozenset({"topic", "persona", "difficulty", "directive", "demonstrations", "num_instructions"}),
        )
    }
    steerable = True
    # Steering places instructions by them, and a conversation's later user turns speak as them.
    lineage = ("topic", "persona")

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        c, inputs = self.inputs.section, self.inputs
        per = inputs.settings.instructions_per_prompt
        combos = [
            (t, p, d, x) for t in c.topics for p in c.personas for d in c.difficulties for x in (c.directives or [""])
        ]
        rng = rng_for("custom", rnd)
        steer = inputs.steer
        weights = steer.combo_weights(pool, combos) if steer is not None else None
        balanced = inputs.balance.weights(combos, BALANCED_KEYS) if inputs.balance is not None else None
        if balanced is not None:  # toward the groups under their minimum (generation.balance)
            weights = [w * b for w, b in zip(weights or [1.0] * len(combos), balanced)]
        asks = []
        for i in range(requests_per_round(inputs.settings, need, per)):
            if weights is not None and steer is None:
                [(topic, persona, difficulty, directive)] = rng.choices(combos, weights=weights)
                demos = rng.sample(inputs.seeds, min(2, len(inputs.seeds)))
            elif steer is None or weights is None:
                topic, persona, difficulty, directive = combos[(rnd * 997 + i) % len(combos)]
                demos = rng.sample(inputs.seeds, min(2, len(inputs.seeds)))
            else:  # toward the topics and personas whose instructions sit in sparse regions
                [(topic, persona, difficulty, directive)] = rng.choices(combos, weights=weights)
                demos = steer.demonstrations(inputs.seeds, pool, min(2, len(inputs.seeds)), 0, rng)
            variables = {
                "topic": topic,
                "persona": persona,
                "difficulty": difficulty,
                "directive": directive,
                "demonstrations": demos,
                "num_instructions": per,
            }
            meta = {
                "stage": "instructions",
                "round": rnd,
                "seed_ids": [d.id for d in demos],
                "topic": topic,
                "persona": persona,
                "difficulty": difficulty,
            }
            asks.append(Ask(inputs.templates["custom"], variables, meta))
        return asks
