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


def record_id(instruction: str, input: str = "", turns: list[dict[str, str]] | None = None) -> str:
    """Stable id of a task: a hash of its instruction and input, independent of the output; for a
    conversation, of its first user turn and a digest of the turns after the first exchange."""
    key = f"{instruction}\x1f{input}" + (f"\x1f{turns_digest(turns)}" if turns else "")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def turns_digest(turns: list[dict[str, str]]) -> str:
    """A digest of a conversation's later turns (after the first exchange), roles included."""
    text = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in turns)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def user_content(instruction: str, input: str = "") -> str:
    """The user turn as a fine-tuned model will see it: the instruction, then the input."""
    return f"{instruction}\n\n{input}" if input else instruction


@dataclass(frozen=True, slots=True)  # no per-record __dict__: a run holds its whole pool
class Record:
    """One instruction-tuning example. `output` is "" while only the instruction exists.

    `instruction`, `input` and `output` are the first exchange; `turns` holds a conversation's
    later messages (user, assistant, user, ...), empty for a single-turn example."""

    instruction: str
    input: str = ""
    output: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    turns: list[dict[str, str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return record_id(self.instruction, self.input, self.turns)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat form TRL's SFTTrainer reads: the first user turn, its answer, then any later turns."""
        return [
            {"role": "user", "content": user_content(self.instruction, self.input)},
            {"role": "assistant", "content": self.output},
            *({"role": m["role"], "content": m["content"]} for m in self.turns),
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
        """The inverse of `to_row`: messages past the first exchange become `turns`."""
        return cls(
            instruction=row["instruction"],
            input=row.get("input") or "",
            output=row.get("output") or "",
            meta=dict(row.get("meta") or {}),
            turns=[dict(m) for m in (row.get("messages") or [])[2:]],
        )
