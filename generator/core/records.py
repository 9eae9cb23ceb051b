"""The record schema: what every stage passes along and what the dataset is made of.

This module depends on nothing else in the project; it is the only part of `generator`
that `filters/` imports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

PREFERENCE = "preference"
"""The `meta` key of a preference record: {"rejected": text, "scores": [{response, score, reason}]};
the chosen response is the record's output. The dataset writes it as `prompt`/`chosen`/`rejected`
(chat messages, as TRL's DPOTrainer reads them) and `scores` columns."""


def record_id(instruction: str, input: str = "") -> str:
    """Stable id of a task: a hash of its instruction and input, independent of the output."""
    digest = hashlib.sha256(f"{instruction}\x1f{input}".encode()).hexdigest()
    return digest[:16]


def user_content(instruction: str, input: str = "") -> str:
    """The user turn as a fine-tuned model will see it: the instruction, then the input."""
    return f"{instruction}\n\n{input}" if input else instruction


@dataclass(frozen=True, slots=True)  # no per-record __dict__: a run holds its whole pool
class Record:
    """One instruction-tuning example. `output` is "" while only the instruction exists."""

    instruction: str
    input: str = ""
    output: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return record_id(self.instruction, self.input)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat form TRL's SFTTrainer reads: one user turn, one assistant turn."""
        return [
            {"role": "user", "content": user_content(self.instruction, self.input)},
            {"role": "assistant", "content": self.output},
        ]

    def with_(self, **changes: Any) -> Record:
        return replace(self, **changes)

    def with_meta(self, **changes: Any) -> Record:
        return replace(self, meta={**self.meta, **changes})

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "messages": self.messages,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        return cls(
            instruction=row["instruction"],
            input=row.get("input") or "",
            output=row.get("output") or "",
            meta=dict(row.get("meta") or {}),
        )
