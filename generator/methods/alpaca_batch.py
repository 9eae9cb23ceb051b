"""Alpaca (Taori et al., 2023): whole tasks (instruction, input, output), many per call, from seed
demonstrations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generator.core.records import Record
from generator.methods.base import Ask, DemoAsk, Inputs, Method, Role, demonstration_asks


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
        return demonstration_asks(self.inputs, ASKS, pool, rnd, need)


def _with_outputs(demos: list[Any], inputs: Inputs) -> list[Any]:
    """Only seed tasks carry an output to show; with none drawn, the first three seeds."""
    return [d for d in demos if not isinstance(d, dict)] or inputs.seeds[:3]


ASKS = DemoAsk(role="batch", count="num_tasks", label="alpaca", shown=_with_outputs)
