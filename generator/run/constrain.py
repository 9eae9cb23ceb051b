"""Verifiable constraints on instructions (`generation.constraints`): before an instruction is
answered, it may get 1-3 constraints that do not conflict (filters/constraints.py), worded as
sentences after it, their kwargs in `meta.constraints`. The draw depends only on the instruction
(and its input), so a resumed run words it the same and sends the same requests."""

from __future__ import annotations

from dataclasses import dataclass

from filters.constraints import CONSTRAINTS, RepeatPrompt, draw, rng_for
from generator.config import ConstraintsConfig
from generator.core.records import Record

DEFAULT_LEFT_OUT = ("response_language",)  # the default `language` record filter drops its answers


@dataclass
class Constrainer:
    cfg: ConstraintsConfig

    @property
    def types(self) -> list[str]:
        if self.cfg.types is not None:
            return list(dict.fromkeys(self.cfg.types))
        return [t for t in CONSTRAINTS if t not in DEFAULT_LEFT_OUT]

    def __call__(self, record: Record) -> Record:
        """The record with its constraints, or as it is when it draws none (`share`); a task that came
        with its output loses it, since that output was written without the constraints."""
        rng = rng_for("constraints", record.instruction, record.input)
        if rng.random() >= self.cfg.share:
            return record
        low, high = self.cfg.bounds()
        drawn = draw(self.types, rng.randint(low, high), rng, record.instruction)
        base = record.instruction.rstrip()
        sentences = [c.wording(rng) for name, c in drawn if name != "repeat_prompt"]
        text = " ".join([base if base.endswith((".", "?", "!", ":")) else base + ".", *sentences])
        entries = [{"type": name, "kwargs": c.model_dump()} for name, c in drawn if name != "repeat_prompt"]
        if any(name == "repeat_prompt" for name, _ in drawn):
            # The request to repeat is everything before the sentence that asks for the repetition.
            repeat = RepeatPrompt(prompt_to_repeat=text)
            text = f"{text} {repeat.wording(rng)}"
            entries.append({"type": "repeat_prompt", "kwargs": repeat.model_dump()})
        return record.with_(instruction=text, output="").with_meta(constraints=entries, base_instruction=base)
