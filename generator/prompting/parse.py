"""Completion text -> candidate items, surviving what models really write.

Every parser takes the completion text and its `finish_reason` and returns a `ParseResult`:
the `Item`s it could read and one `Rejection` (a stable snake_case reason plus the text) for each
piece it had to throw away. Each parser family fills these fields of an item and leaves the
others at their defaults:

    instruction parsers   instruction (magpie_query: a self-written user turn, Magpie)
    yes_no                is_classification
    instance parsers      input, output
    task parsers          instruction, input, output
    response              output

When `finish_reason == "length"` the answer was cut off, so the last item is dropped as
`truncated`: a half-written instruction looks complete to every later filter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from generator.core.errors import ConfigError

# Every reason a parser may give; tests check that no parser invents another.
REASONS = frozenset(
    {
        "empty_answer",  # the completion is empty or whitespace
        "no_items",  # text was there but nothing in it had the expected shape
        "truncated",  # cut off by max_tokens (finish_reason "length")
        "empty_item",  # a list marker or field with nothing after it
        "duplicate_item",  # the same item twice in one answer
        "invalid_json",  # no JSON value could be decoded
        "wrong_json_shape",  # JSON decoded but is not the object/array the schema describes
        "missing_instruction",
        "missing_output",
        "unclear_answer",  # yes/no question answered with neither
    }
)


@dataclass(frozen=True)
class Item:
    """One candidate read from an answer; text fields are stripped, an instruction or output
    that a parser fills is never empty, and an input means none when empty."""

    instruction: str = ""
    input: str = ""
    output: str = ""
    is_classification: bool | None = None


# The fields each parser family fills, in the order a rejected duplicate shows them.
_INSTRUCTION = ("instruction",)
_INSTANCE = ("input", "output")
_TASK = ("instruction", "input", "output")


@dataclass(frozen=True)
class Rejection:
    reason: str
    text: str = ""


@dataclass
class ParseResult:
    items: list[Item] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, reason: str, text: str = "") -> None:
        self.rejections.append(Rejection(reason, text))


Parser = Callable[..., ParseResult]

# ---------------------------------------------------------------------------------------------
# Shared cleaning

_FENCE = re.compile(r"^\s*```[\w+-]*\s*$", re.MULTILINE)
# A chatty line that introduces the answer rather than being part of it. "Sort the following
# numbers:" is part of an instruction, so a colon alone does not make an introduction.
_CHATTY = re.compile(
    r"^\s*(sure|certainly|of course|okay|ok|absolutely|great|below (are|is))\b|\bhere(?: are| is|'s| you go)\b"
    r"|\b(rewritten|new|revised|harder|evolved|improved) (instruction|prompt|version|task)s?\b",
    re.IGNORECASE,
)


def _is_intro(line: str) -> bool:
    stripped = line.strip()
    return bool(_CHATTY.search(stripped)) or (stripped.endswith(":") and len(stripped.split()) <= 3)


_LABEL_PREFIX = re.compile(
    r"^\s*(?:#+\s*)?(?:\**)\s*(?:new |rewritten |evolved |created |final )?"
    r"(?:instruction|task|prompt|question)\s*(?:\d+\s*)?(?:#\s*)?(?:\**)(?:\s*:|\s+-\s)\s*(?:\**)\s*",
    re.IGNORECASE,
)
_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)
_NOINPUT = {
    "",
    "<noinput>",
    "<no input>",
    "noinput",
    "none",
    "n/a",
    "na",
    "null",
    "(none)",
    "-",
    "no input",
    "<none>",
    "empty",
    "(empty)",
}


def _strip_fences(text: str) -> str:
    return _FENCE.sub("", text)


def _clean_item(text: str) -> str:
    """One item's text without markdown emphasis, a leading label or wrapping quotes."""
    text = " ".join(text.split()) if "\n" not in text.strip() else text.strip()
    text = _LABEL_PREFIX.sub("", text, count=1).strip()
    text = _BOLD.sub(r"\1", text).strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] in "\u201c\u2018" and text[-1] in "\u201d\u2019":
        text = text[1:-1].strip()
    return text


def _normalize_input(value: str) -> str:
    return "" if value.strip().strip(".").lower() in _NOINPUT else value.strip()


def _dedupe(result: ParseResult, key: Callable[[Item], Any], fields: tuple[str, ...]) -> None:
    """Keep the first item of each `key`; a later one is rejected with its `fields` shown as a dict."""
    seen: set[Any] = set()
    kept = []
    for item in result.items:
        k = key(item)
        if k in seen:
            result.reject("duplicate_item", str({name: getattr(item, name) for name in fields}))
        else:
            seen.add(k)
            kept.append(item)
    result.items = kept


def _drop_last_if_truncated(result: ParseResult, finish_reason: str | None, raw: list[str]) -> list[str]:
    if finish_reason == "length" and raw:
        result.reject("truncated", raw[-1])
        return raw[:-1]
    return raw


# ---------------------------------------------------------------------------------------------
# Lists of instructions

_MARKER = re.compile(
    r"^\s*(\*\*|__)?\s*"  # "**1.** Write": bold around the marker
    r"(?:(?:task|instruction|question|prompt)\s*#?\s*\d+\s*[:.)\-]"  # Task 3:
    r"|\(?\d{1,3}\s*[.):]"  # 3.  3)  (3)  3:
    r"|[-*\u2022\u2023\u25e6\u2043+](?=\s))"  # - * • +
    r"(?(1)\s*(?:\*\*|__))\s*",
    re.IGNORECASE,
)


def _split_list(text: str) -> tuple[list[str], bool, bool]:
    """Split into items by list markers: (items, whether any marker was found, whether a blank
    line closed the last item).

    A line without a marker continues the item above it; a blank line ends an item, so prose
    after the list ("I hope these help!") is not glued onto the last item.
    """
    items: list[str] = []
    current: list[str] | None = None
    found = closed = False
    for line in text.splitlines():
        m = _MARKER.match(line)
        if m:
            found, closed = True, False
            if current is not None:
                items.append("\n".join(current))
            current = [line[m.end() :]]
        elif not line.strip():
            if current is not None:
                items.append("\n".join(current))
                closed = True
            current = None
        elif current is not None:
            current.append(line.strip())
    if current is not None:
        items.append("\n".join(current))
    return items, found, closed


def parse_instruction_list(text: str, finish_reason: str | None = None) -> ParseResult:
    """A numbered or bulleted list of instructions. Without any marker, one instruction per line."""
    result = ParseResult()
    text = _strip_fences(text or "")
    if not text.strip():
        result.reject("empty_answer")
        return result
    raw, found, closed = _split_list(text)
    if not found:
        raw = [line for line in text.splitlines() if line.strip()]
        # "Sure! Here are five tasks:" introduces a list; it is not one.
        while raw and _is_intro(raw[0]):
            raw = raw[1:]
    if not closed:  # cut off inside the list, not in the prose after it
        raw = _drop_last_if_truncated(result, finish_reason, raw)
    for piece in raw:
        item = _clean_item(piece)
        if item:
            result.items.append(Item(instruction=item))
        else:
            result.reject("empty_item", piece)
    if not result.items and not result.rejections:
        result.reject("no_items", text[:200])
    _dedupe(result, lambda i: i.instruction.lower(), _INSTRUCTION)
    return result


def parse_single_instruction(text: str, finish_reason: str | None = None) -> ParseResult:
    """One rewritten instruction (Evol-Instruct): preamble lines and labels are dropped."""
    result = ParseResult()
    text = _strip_fences(text or "").strip()
    if not text:
        result.reject("empty_answer")
        return result
    lines = text.splitlines()
    while len(lines) > 1 and _is_intro(lines[0]) and not _LABEL_PREFIX.match(lines[0]):
        lines = lines[1:]
    # A label on its own line ("#Rewritten Prompt#:") with the instruction below it.
    if len(lines) > 1 and not _clean_item(lines[0]) and _LABEL_PREFIX.match(lines[0]):
        lines = lines[1:]
    item = _clean_item("\n".join(lines))
    if finish_reason == "length":
        result.reject("truncated", item)
    elif item:
        result.items.append(Item(instruction=item))
    else:
        result.reject("empty_item", text[:200])
    return result


# ---------------------------------------------------------------------------------------------
# JSON

_MAX_JSON_STARTS = 64  # bounds the work on long answers full of brackets (code, math)


def _find_json(text: str) -> tuple[Any, int] | None:
    """The first JSON object or array in `text` and where it starts; prose around it is ignored."""
    decoder = json.JSONDecoder()
    for attempt, m in enumerate(re.finditer(r"[\[{]", text)):
        if attempt >= _MAX_JSON_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            continue
        return value, m.start()
    return None


def _salvage_array(text: str, key: str) -> list[Any] | None:
    """Complete elements of the array under `"key"` (or of the first array) in cut-off JSON."""
    m = re.search(r'"' + re.escape(key) + r'"\s*:\s*\[', text) or re.search(r"\[", text)
    if not m:
        return None
    decoder = json.JSONDecoder()
    pos = m.end()
    out: list[Any] = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return out
        try:
            value, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return out
        out.append(value)


def _json_elements(text: str, key: str, finish_reason: str | None, result: ParseResult) -> list[Any]:
    """The elements of the list under `key` ({key: [...]} or a bare [...]), or [] with a rejection."""
    text = _strip_fences(text or "")
    if not text.strip():
        result.reject("empty_answer")
        return []
    found = _find_json(text)
    if found is None:
        salvaged = _salvage_array(text, key)
        if finish_reason == "length":
            result.reject("truncated", text[-200:])
            return salvaged or []
        result.reject("invalid_json", text[:200])
        return []
    value, _ = found
    if isinstance(value, dict):
        if isinstance(value.get(key), list):
            return value[key]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        if finish_reason == "length":
            # The outer object was cut off; the first decodable value was something inside it.
            result.reject("truncated", text[-200:])
            return _salvage_array(text, key) or []
        return [value]  # one object instead of a list of one
    if isinstance(value, list):
        return value
    result.reject("wrong_json_shape", text[:200])
    return []


def _str_field(obj: dict[str, Any], *names: str) -> str:
    for name in names:
        value = obj.get(name)
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    return ""


# Small models number the strings inside a JSON list too: ["1. Write a haiku."].
_LEADING_NUMBER = re.compile(r"^\s*\d{1,3}[.)]\s+")


def parse_json_instructions(text: str, finish_reason: str | None = None) -> ParseResult:
    """`{"instructions": [str, ...]}`, a bare list, or a list of `{"instruction": ...}` objects."""
    result = ParseResult()
    for element in _json_elements(text, "instructions", finish_reason, result):
        if isinstance(element, dict):
            text_field = _str_field(element, "instruction", "task", "prompt")
            if not text_field:
                result.reject("missing_instruction", repr(element)[:200])
                continue
            element = text_field
        if not isinstance(element, str):
            result.reject("wrong_json_shape", repr(element)[:200])
        elif item := _clean_item(_LEADING_NUMBER.sub("", element, count=1)):
            result.items.append(Item(instruction=item))
        else:
            result.reject("empty_item", element)
    _dedupe(result, lambda i: i.instruction.lower(), _INSTRUCTION)
    return result


def _task_from_obj(obj: Any, result: ParseResult, need_instruction: bool) -> Item | None:
    if not isinstance(obj, dict):
        result.reject("wrong_json_shape", repr(obj)[:200])
        return None
    instruction = _str_field(obj, "instruction", "task")
    output = _str_field(obj, "output", "response", "answer", "label")
    if need_instruction and not instruction:
        result.reject("missing_instruction", repr(obj)[:200])
        return None
    if not output:
        result.reject("missing_output", repr(obj)[:200])
        return None
    return Item(
        instruction=instruction if need_instruction else "",
        input=_normalize_input(_str_field(obj, "input", "context")),
        output=output,
    )


def parse_json_tasks(text: str, finish_reason: str | None = None) -> ParseResult:
    """`{"tasks": [{"instruction", "input", "output"}, ...]}` or a bare list of such objects."""
    result = ParseResult()
    for element in _json_elements(text, "tasks", finish_reason, result):
        if task := _task_from_obj(element, result, need_instruction=True):
            result.items.append(task)
    _dedupe(result, lambda i: (i.instruction.lower(), i.input.lower()), _TASK)
    return result


def parse_json_instances(text: str, finish_reason: str | None = None) -> ParseResult:
    """`{"instances": [{"input", "output"}, ...]}` or a bare list of such objects."""
    result = ParseResult()
    for element in _json_elements(text, "instances", finish_reason, result):
        if instance := _task_from_obj(element, result, need_instruction=False):
            result.items.append(instance)
    _dedupe(result, lambda i: (i.input.lower(), i.output.lower()), _INSTANCE)
    return result


# ---------------------------------------------------------------------------------------------
# Labelled blocks: "Input: ... Output: ..." and "Instruction: ... Input: ... Output: ..."

_FIELD = re.compile(
    r"^\s*(?:#+\s*)?(?:\d{1,3}\s*[.)]\s*)?(?:[-*]\s+)?(?:\*\*|__)?\s*"
    r"(instruction|task|input|output|class label|label|response|answer)s?"
    r"(?:\s*#?\d{1,3})?\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?",  # "Input 2:" too
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(?:#{2,}.*|-{3,}|={3,}|(?:\*\*)?\s*(?:example|task|instance)\s*#?\s*\d+\s*(?:\*\*)?\s*:?\s*(?:\*\*)?)\s*$",
    re.IGNORECASE,
)
_FIELD_NAMES = {
    "instruction": "instruction",
    "task": "instruction",
    "input": "input",
    "output": "output",
    "class label": "output",
    "label": "output",
    "response": "output",
    "answer": "output",
}


_UNLABELLED = "_unlabelled"


def _split_blocks(text: str, fields: set[str]) -> list[dict[str, str]]:
    """Blocks of labelled fields. A new block starts at a separator line or when a field that the
    current block already has appears again; unlabelled lines continue the field above them.

    For instances, unlabelled text right after a separator ("Example 1:", a quoted review, then
    "Output: Positive") is the block's input when the block has no `Input:` of its own.
    """
    blocks: list[dict[str, str]] = []

    def close(block: dict[str, list[str]]) -> None:
        done = {k: "\n".join(v).strip() for k, v in block.items()}
        loose = done.pop(_UNLABELLED, "")
        if not done:
            return
        if loose and fields == {"input", "output"} and "input" not in done:
            done["input"] = loose
        blocks.append(done)

    current: dict[str, list[str]] = {}
    last: str | None = None
    for line in text.splitlines():
        m = _FIELD.match(line)
        name = _FIELD_NAMES[m.group(1).lower()] if m else None
        if m is not None and name in fields:
            if name in current:
                close(current)
                current = {}
            current[name] = [line[m.end() :].strip()]
            last = name
        elif _SEPARATOR.match(line):
            close(current)
            current, last = {_UNLABELLED: []}, _UNLABELLED
        elif last is not None:
            current[last].append(line.rstrip())
    close(current)
    return blocks


def _labelled(text: str, finish_reason: str | None, fields: set[str]) -> tuple[ParseResult, list[dict]]:
    result = ParseResult()
    text = _strip_fences(text or "")
    if not text.strip():
        result.reject("empty_answer")
        return result, []
    blocks = _split_blocks(text, fields)
    if not blocks:
        result.reject("no_items", text[:200])
        return result, []
    if finish_reason == "length":
        result.reject("truncated", str(blocks[-1])[:200])
        blocks = blocks[:-1]
    return result, blocks


def parse_instances(text: str, finish_reason: str | None = None) -> ParseResult:
    """Instances as `Input: ... Output: ...` blocks, in either order (output-first writes
    `Class label:` or `Output:` before `Input:`). `<noinput>`, `None`, `N/A` mean an empty input."""
    result, blocks = _labelled(text, finish_reason, {"input", "output"})
    for block in blocks:
        if not block.get("output"):
            result.reject("missing_output", str(block)[:200])
            continue
        result.items.append(Item(input=_normalize_input(block.get("input", "")), output=block["output"]))
    _dedupe(result, lambda i: (i.input.lower(), i.output.lower()), _INSTANCE)
    return result


def parse_alpaca_batch(text: str, finish_reason: str | None = None) -> ParseResult:
    """Complete tasks as `Instruction: / Input: / Output:` blocks, separated by `###`, `Task N`
    lines, or simply by the next `Instruction:`. Numbered labels (`1. Instruction:`) are fine."""
    result, blocks = _labelled(text, finish_reason, {"instruction", "input", "output"})
    for block in blocks:
        instruction = _clean_item(block.get("instruction", ""))
        if not instruction:
            result.reject("missing_instruction", str(block)[:200])
        elif not block.get("output"):
            result.reject("missing_output", str(block)[:200])
        else:
            result.items.append(
                Item(instruction=instruction, input=_normalize_input(block.get("input", "")), output=block["output"])
            )
    _dedupe(result, lambda i: (i.instruction.lower(), i.input.lower()), _TASK)
    return result


# ---------------------------------------------------------------------------------------------
# Single answers

_YES_NO = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
# Small models often answer in a sentence instead: "The task is not a classification task."
_IS_NOT = re.compile(r"\b(?:is\s+not|isn't|not)\s+(?:an?\s+)?classification\b", re.IGNORECASE)
_IS = re.compile(r"\bis\s+(?:an?\s+)?classification\b", re.IGNORECASE)


def parse_yes_no(text: str, finish_reason: str | None = None) -> ParseResult:
    """The first yes/no (or true/false) in the answer: "Yes.", "Answer: no", "**Yes**, because";
    failing that, a sentence saying the task is (not) a classification task."""
    result = ParseResult()
    text = _strip_fences(text or "")
    if not text.strip():
        result.reject("empty_answer")
        return result
    head = text[:500]
    m = _YES_NO.search(head)
    if m is not None:
        result.items.append(Item(is_classification=m.group(1).lower() in ("yes", "true")))
    elif _IS_NOT.search(head):
        result.items.append(Item(is_classification=False))
    elif _IS.search(head):
        result.items.append(Item(is_classification=True))
    else:
        result.reject("unclear_answer", text[:200])
    return result


_RESPONSE_LABEL = re.compile(r"^\s*(?:\*\*)?(?:output|response|answer)(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)


def _whole(text: str, finish_reason: str | None, field: str) -> ParseResult:
    """`text` (already cleaned) as one item's `field`: rejected when empty, or when cut off rather
    than kept half-written."""
    result = ParseResult()
    if not text:
        result.reject("empty_answer")
    elif finish_reason == "length":
        result.reject("truncated", text[-200:])
    else:
        result.items.append(Item(**{field: text}))
    return result


def parse_response(text: str, finish_reason: str | None = None) -> ParseResult:
    """The whole answer as the output, minus a leading `Output:`/`Response:` label; a cut-off
    answer is rejected rather than kept half-written."""
    return _whole(_RESPONSE_LABEL.sub("", (text or "").strip(), count=1).strip(), finish_reason, "output")


def parse_magpie_query(text: str, finish_reason: str | None = None) -> ParseResult:
    """A user turn the model wrote by itself (Magpie): the whole text is the instruction, kept as
    written so that the `query_form` filter sees any leaked template; cut off, it is rejected."""
    return _whole((text or "").strip(), finish_reason, "instruction")


_SPEAKER_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:user|human|me|next message|follow[- ]up(?: question)?|question)(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_SPEAKER_LINE = re.compile(r"^\s*(?:\*\*)?(?:assistant|ai|gpt|user|human)(?:\*\*)?\s*:", re.IGNORECASE | re.MULTILINE)


def parse_user_turn(text: str, finish_reason: str | None = None) -> ParseResult:
    """The user's next message in a conversation (`item.instruction`): a leading `User:` label and
    wrapping quotes dropped, cut where the model goes on to write the next message (a line that
    starts with `Assistant:` or `User:`); a cut-off message is rejected."""
    message = _SPEAKER_LABEL.sub("", _strip_fences(text or "").strip(), count=1)
    if (end := _SPEAKER_LINE.search(message)) is not None:
        message, finish_reason = message[: end.start()], "stop"  # what follows the cut does not matter
    message = message.strip()
    if len(message) > 1 and message[0] == message[-1] and message[0] in "\"'":
        message = message[1:-1].strip()
    return _whole(message, finish_reason, "instruction")


PARSERS: dict[str, Parser] = {
    "instruction_list": parse_instruction_list,
    "single_instruction": parse_single_instruction,
    "json_instructions": parse_json_instructions,
    "yes_no": parse_yes_no,
    "instances": parse_instances,
    "json_instances": parse_json_instances,
    "alpaca_batch": parse_alpaca_batch,
    "json_tasks": parse_json_tasks,
    "response": parse_response,
    "magpie_query": parse_magpie_query,
    "user_turn": parse_user_turn,
}


def get_parser(name: str) -> Parser:
    if name not in PARSERS:
        raise ConfigError(f"unknown parser {name!r}; valid parsers: {', '.join(PARSERS)}")
    return PARSERS[name]


def parse(name: str, text: str, finish_reason: str | None = None) -> ParseResult:
    """Parse `text` with the parser registered as `name` (a template's `parser:`)."""
    return get_parser(name)(text, finish_reason)
