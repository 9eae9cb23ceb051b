"""Paraphrase: each seed task reworded in a given style, several ways per request (more instructions
for the same tasks, in the wording real users would use; the answers are then written as usual)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from generator.core.records import Record
from generator.core.section import Section
from generator.methods.base import Ask, Method, Role, requests_per_round, rng_for


class ParaphraseConfig(Section):
    styles: list[str] = Field(
        default_factory=lambda: ["in plainer words", "more formally", "as a beginner would ask it", "more briefly"],
        min_length=1,
        description="How each rewording should differ from the task; the requests take them in turn.",
    )


class Paraphrase(Method):
    name = "paraphrase"
    summary = (
        "rewords each seed task in the styles you list (`instructions_per_prompt` rewordings per request), "
        "for the same tasks in the many ways users ask them"
    )
    example = "paraphrase.yaml"
    section = "paraphrase"
    config = ParaphraseConfig
    roles = {
        "paraphrase": Role(
            "paraphrase",
            "Rewordings of one task in a given style.",
            frozenset({"instruction", "style", "num_instructions"}),
        )
    }

    lineage = ("paraphrase_style",)

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        inputs = self.inputs
        per, styles = inputs.settings.instructions_per_prompt, inputs.section.styles
        rng = rng_for("paraphrase", rnd)
        asks = []
        for i in range(requests_per_round(inputs.settings, need, per)):
            seed = inputs.seeds[rng.randrange(len(inputs.seeds))]
            style = styles[(rnd * 997 + i) % len(styles)]
            variables = {"instruction": seed.instruction, "style": style, "num_instructions": per}
            meta = {"stage": "instructions", "round": rnd, "seed_ids": [seed.id], "paraphrase_style": style}
            asks.append(Ask(inputs.templates["paraphrase"], variables, meta))
        return asks
