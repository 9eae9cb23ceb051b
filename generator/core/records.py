"""The record schema: what every stage passes along and what the dataset is made of.

This module depends on nothing else in the project; it is the only part of `generator`
that `filters/` imports.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

PREFERENCE = "preference"
"""The `meta` key of a preference record: {"rejected": text, "scores": [{response, score, reason}]};
the chosen response is the record's output. The dataset writes it as `prompt`/`chosen`/`rejected`
(chat messages, as TRL's DPOTrainer reads them) and `scores` columns."""


def record_id(instruction: str, input: str = "", turns: list[dict[str, Any]] | None = None, system: str = "") -> str:
    """Stable id of a task: a hash of its instruction and input, independent of the output; for a
    conversation, of its first user turn and a digest of the turns after the first exchange (and of
    its system prompt, when it has one)."""
    key = f"{instruction}\x1f{input}" + (f"\x1f{turns_digest(turns)}" if turns else "")
    key += f"\x1dsystem\x1f{system}" if system else ""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def turns_digest(turns: list[dict[str, Any]]) -> str:
    """A digest of a conversation's later turns (after the first exchange), roles and tool calls included."""
    text = "\x1e".join(
        f"{m['role']}\x1f{m['content']}"
        + (f"\x1f{json.dumps(m['tool_calls'], sort_keys=True)}" if m.get("tool_calls") else "")
        for m in turns
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def message(role: str, content: str, **tool: Any) -> dict[str, Any]:
    """A chat message; `tool` adds the tool fields that are set (`tool_calls` on an assistant turn,
    `tool_call_id` and `name` on a tool result), so a plain message stays {role, content}."""
    return {"role": role, "content": content, **{k: v for k, v in tool.items() if v}}


def split_conversation(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A conversation as a Record's fields (system, instruction, output, tool_calls, turns): an
    optional leading system message, the first user turn, its answer (when the next message is an
    assistant's), the rest as `turns`. None when it does not start (after the system prompt) with a
    user turn followed by an answer or nothing, which a Record cannot hold as it is."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    rest = messages[start:]
    if not rest or rest[0]["role"] != "user" or (len(rest) > 1 and rest[1]["role"] != "assistant"):
        return None
    answer = rest[1] if len(rest) > 1 else {}
    return {
        "system": messages[0]["content"] if start else "",
        "instruction": rest[0]["content"],
        "output": answer.get("content") or "",
        "tool_calls": list(answer.get("tool_calls") or []),
        "turns": [dict(m) for m in rest[2:]],
    }


def user_content(instruction: str, input: str = "") -> str:
    """The user turn as a fine-tuned model will see it: the instruction, then the input."""
    return f"{instruction}\n\n{input}" if input else instruction


@dataclass(frozen=True, slots=True)  # no per-record __dict__: a run holds its whole pool
class Record:
    """One instruction-tuning example. `output` is "" while only the instruction exists.

    `instruction`, `input` and `output` are the first exchange; `turns` holds a conversation's
    later messages (user, assistant, user, ..., and `tool` results), empty for a single-turn example.
    A conversation read from a file may also have a `system` prompt (its first message), tool calls
    in its first answer (`tool_calls`, OpenAI form: [{id, type, function: {name, arguments}}]) and
    the `tools` it may call (OpenAI form; None where the source has no tools list)."""

    instruction: str
    input: str = ""
    output: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    turns: list[dict[str, Any]] = field(default_factory=list)
    system: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None

    @property
    def id(self) -> str:
        return record_id(self.instruction, self.input, self.turns, self.system)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat form TRL's SFTTrainer reads: the system prompt if any, the first user turn, its
        answer, then any later turns."""
        return [
            *([message("system", self.system)] if self.system else []),
            message("user", user_content(self.instruction, self.input)),
            message("assistant", self.output, tool_calls=self.tool_calls),
            *(dict(m) for m in self.turns),
        ]

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]], **fields: Any) -> Record | None:
        """A conversation as a record (see `split_conversation`); `fields` adds meta, tools or input."""
        parts = split_conversation(messages)
        return None if parts is None else cls(**parts, **fields)

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
            **({"tools": self.tools} if self.tools is not None else {}),
        }

    @property
    def uses_tools(self) -> bool:
        """The record has a tools list or a tool call or result: its dataset needs the tool columns."""
        return (
            self.tools is not None
            or bool(self.tool_calls)
            or any(m["role"] == "tool" or m.get("tool_calls") for m in self.turns)
        )

    @property
    def label(self) -> bool | None:
        """The KTO label (the conversation is desirable or not), when the row came with one."""
        value = self.meta.get("label")
        return value if isinstance(value, bool) else None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        """The inverse of `to_row`: messages past the first exchange become `turns`."""
        parts = split_conversation(row.get("messages") or []) or {}
        return cls(
            instruction=row["instruction"],
            input=row.get("input") or "",
            output=row.get("output") or "",
            meta=dict(row.get("meta") or {}),
            turns=parts.get("turns", []),
            system=parts.get("system", ""),
            tool_calls=parts.get("tool_calls", []),
            tools=row.get("tools"),
        )
