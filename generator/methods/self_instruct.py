"""Self-instruct (Wang et al., 2023): new instructions from seed and pool demonstrations."""

from __future__ import annotations

from collections.abc import Sequence

from generator.core.records import Record
from generator.methods.base import Ask, DemoAsk, Method, Role, demonstration_asks


class SelfInstruct(Method):
    name = "self_instruct"
    summary = (
        "grows a pool from your seed tasks (the seeds set the domain and style; the default): each request "
        "shows `num_demonstrations` seed tasks and pool instructions and asks for `instructions_per_prompt` new ones"
    )
    example = "self-instruct.yaml"
    roles = {
        "instructions": Role(
            "self_instruct", "New instructions from demonstrations.", frozenset({"demonstrations", "num_instructions"})
        )
    }
    steerable = True
    steered_by_default = True

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        return demonstration_asks(self.inputs, ASKS, pool, rnd, need)


ASKS = DemoAsk(role="instructions", count="num_instructions", label="self_instruct")
