"""Records written back in the formats the readers take (generator/core/readers.py): `export`'s
formats, each the inverse of its reader, so that a file read and exported to its own format holds
the same conversations, tool calls, pairs and questions.

Single-turn formats (alpaca, dolly, text) write the first exchange; the conversation formats
(sharegpt, chat) write every turn, tool calls and the tools list; a preference record is written as
a pair (sharegpt: LLaMA-Factory's DPO rows; chat and preference: TRL's prompt/chosen/rejected
messages; hh: HH-RLHF's two transcripts). `questions` writes MT-Bench / Arena-Hard question rows
with the benchmark's own keys (kept in `meta`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import IO, Any

from generator.core.errors import ConfigError
from generator.core.records import PREFERENCE, Record, message

JSON_ARRAY = "array"
JSON_LINES = "lines"
SPEAKERS = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}
QUESTION_META_SKIP = {"turn_objects", PREFERENCE, "source_id"}


def _alpaca(r: Record) -> dict[str, Any]:
    return {"instruction": r.instruction, "input": r.input, "output": r.output}


def _dolly(r: Record) -> dict[str, Any]:
    category = r.meta.get("task_type")
    return {"instruction": r.instruction, "context": r.input, "response": r.output, "category": category or ""}


def _text(r: Record) -> dict[str, Any]:
    return {"prompt": r.instruction, "completion": r.output}


def _chosen_messages(r: Record) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The conversation and, for a pair, the rejected answer as a message (the chosen one is the
    conversation's last)."""
    pair = r.meta.get(PREFERENCE)
    rejected = message("assistant", pair["rejected"]) if isinstance(pair, dict) else None
    return r.messages, rejected


def _share_turn(m: dict[str, Any]) -> dict[str, Any]:
    if m.get("tool_calls"):
        calls = [{"name": c["function"]["name"], "arguments": _arguments(c)} for c in m["tool_calls"]]
        return {
            "from": "function_call",
            "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False),
        }
    return {"from": SPEAKERS.get(m["role"], m["role"]), "value": m["content"]}


def _arguments(call: dict[str, Any]) -> Any:
    text = call["function"]["arguments"]
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return text


def _plain_tools(tools: list[dict[str, Any]]) -> str:
    """A tools list as ShareGPT files hold it: JSON text of the function schemas."""
    return json.dumps([t.get("function", t) if t.get("type") == "function" else t for t in tools], ensure_ascii=False)


def _sharegpt(r: Record) -> dict[str, Any]:
    messages, rejected = _chosen_messages(r)
    if rejected is not None:  # LLaMA-Factory's DPO row: the prompt, then one chosen and one rejected turn
        out: dict[str, Any] = {"conversations": [_share_turn(m) for m in messages[:-1]]}
        out["chosen"], out["rejected"] = _share_turn(messages[-1]), _share_turn(rejected)
    else:
        out = {"conversations": [_share_turn(m) for m in messages]}
    if r.tools is not None:
        out["tools"] = _plain_tools(r.tools)
    return out


def _chat(r: Record) -> dict[str, Any]:
    messages, rejected = _chosen_messages(r)
    out: dict[str, Any] = {"messages": messages} if rejected is None else _pair(messages, rejected)
    if r.tools is not None:
        out["tools"] = r.tools
    if r.label is not None:  # KTO: a desirable (or not) conversation
        out["label"] = r.label
    return out


def _pair(messages: list[dict[str, Any]], rejected: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": messages[:-1], "chosen": messages[-1:], "rejected": [rejected]}


def _preference(r: Record) -> dict[str, Any]:
    messages, rejected = _chosen_messages(r)
    if rejected is None:
        raise ConfigError(f"record {r.id} is not a preference pair; export `preference` needs chosen/rejected rows")
    return _pair(messages, rejected)


def _hh(r: Record) -> dict[str, Any]:
    pair = _preference(r)

    def transcript(messages: list[dict[str, Any]]) -> str:
        return "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages)

    return {
        "chosen": transcript(pair["prompt"] + pair["chosen"]),
        "rejected": transcript(pair["prompt"] + pair["rejected"]),
    }


def _questions(r: Record) -> dict[str, Any]:
    turns = [m["content"] for m in r.messages if m["role"] == "user"]
    meta = {k: v for k, v in r.meta.items() if k not in QUESTION_META_SKIP}
    objects = bool(r.meta.get("turn_objects"))
    return {**meta, "turns": [{"content": t} for t in turns] if objects else turns}


WRITERS: dict[str, tuple[Callable[[Record], dict[str, Any]], str, str]] = {
    "alpaca": (_alpaca, JSON_ARRAY, "[{instruction, input, output}]"),
    "dolly": (_dolly, JSON_LINES, "one {instruction, context, response, category} per line"),
    "sharegpt": (
        _sharegpt,
        JSON_ARRAY,
        "[{conversations: [{from, value}], tools?}]; tool calls as function_call/observation turns; "
        "pairs as LLaMA-Factory DPO rows (chosen/rejected turns)",
    ),
    "chat": (
        _chat,
        JSON_LINES,
        "one {messages, tools?, label?} per line (OpenAI chat, tool calls included); "
        "pairs as {prompt, chosen, rejected}",
    ),
    "preference": (
        _preference,
        JSON_LINES,
        "one {prompt, chosen, rejected} (chat messages, TRL's DPO format) per line",
    ),
    "hh": (_hh, JSON_LINES, "one {chosen, rejected} HH-RLHF transcript pair per line"),
    "questions": (_questions, JSON_LINES, "one {turns, ...} per line (MT-Bench / Arena-Hard questions, keys kept)"),
    "text": (_text, JSON_LINES, "one {prompt, completion} per line"),
}
"""Export format -> (row writer, JSON array or lines, what it writes: the CLI's help)."""


def write_records(records: Iterable[Record], fmt: str, f: IO[str]) -> int:
    """Write `records` to the open text file in `fmt` (see WRITERS); returns the rows written."""
    if fmt not in WRITERS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(WRITERS)}")
    write, layout, _ = WRITERS[fmt]
    items = [write(r) for r in records]
    if layout == JSON_ARRAY:
        json.dump(items, f, ensure_ascii=False, indent=2)
    else:
        f.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    return len(items)
