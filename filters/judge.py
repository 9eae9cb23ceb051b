"""LLM-as-judge: the served model scores each instruction-response pair against a rubric (a Jinja
template) and answers in JSON that a schema constrains; pairs under the threshold are dropped.

A rubric names its criteria in its metadata (`criteria: [...]`; without it, helpfulness, correctness
and clarity). One that uses `passage` (the row's document passage, `meta.source.text`: the documents
method) judges only rows that have one: `judge_faithfulness.jinja` scores whether the answer says
what its passage says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from filters.base import KEEP, BatchChat, Filter, FilterContext, Verdict, drop
from generator.core.errors import ConfigError
from generator.core.paths import builtin_dir, builtin_path
from generator.core.records import Record
from generator.core.sandbox import load_text_template

CRITERIA = ("helpfulness", "correctness", "clarity")
VARIABLES = frozenset({"instruction", "input", "output", "passage"})
_CRITERION = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def response_format(criteria: tuple[str, ...] = CRITERIA) -> dict[str, Any]:
    """The JSON schema the judge's answer is held to: each criterion an integer from 1 to 5."""
    schema = {
        "type": "object",
        "properties": {c: {"type": "integer", "minimum": 1, "maximum": 5} for c in criteria},
        "required": list(criteria),
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "judgement", "schema": schema}}


RESPONSE_FORMAT = response_format()
_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


def find_template(name: str) -> Path:
    """`name` as a path if it exists, else a built-in prompt of that name."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    builtin = builtin_path("prompts", name)
    if builtin is not None:
        return builtin
    raise ValueError(
        f"judge: template {name!r} is neither a file nor a built-in prompt in "
        f"{builtin_dir('prompts')}; give an existing path (absolute, or relative to the working "
        "directory) or the name of a built-in template such as 'judge.jinja'"
    )


def parse_scores(text: str | None, criteria: tuple[str, ...] = CRITERIA) -> dict[str, int] | None:
    """The criteria scores in a judge's answer, None when the answer is missing, cut off or out of
    range. Takes the first JSON object when the model wrapped it in prose."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        m = _OBJECT.search(text)
        try:
            data = json.loads(m.group(0)) if m else None
        except json.JSONDecodeError:
            return None
    if not isinstance(data, dict):
        return None
    scores = {}
    for c in criteria:
        value = data.get(c)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 5:
            return None
        scores[c] = int(value)
    return scores


class LLMJudge(Filter):
    """Scores records 1-5 on helpfulness, correctness and clarity through `ctx.chat`; drops those
    whose mean is below `threshold` (`low_judge_score`) and, with `on_error: drop`, those whose
    answer could not be read (`judge_failed`). Kept records get `judge` (the mean) and
    `judge_<criterion>` in their scores."""

    name = "judge"

    def __init__(
        self,
        template: str = "judge.jinja",
        threshold: float = 3.5,
        max_tokens: int = 64,
        temperature: float = 0.0,
        on_error: str = "drop",
    ):
        path = find_template(template)
        # The metadata comment is optional here: a rubric of the user's own may be plain Jinja.
        try:
            self.template = load_text_template(path)
        except ConfigError as err:
            raise ValueError(f"judge: {err}") from None
        unknown = self.template.variables - VARIABLES
        if unknown:
            raise ValueError(
                f"judge: template {path} uses {sorted(unknown)}, but a judge template can only use {sorted(VARIABLES)}"
            )
        self.criteria = _criteria(path, self.template.meta.get("criteria", CRITERIA))
        self.needs_passage = "passage" in self.template.variables
        self.threshold = threshold
        self.on_error = on_error
        self.request = {
            "response_format": response_format(self.criteria),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        self.chat: BatchChat | None = None

    def setup(self, ctx: FilterContext) -> None:
        if ctx.chat is None:
            raise RuntimeError(
                "judge: the filter context has no chat client; the pipeline must pass "
                "FilterContext(chat=...) to setup() before the judge runs"
            )
        self.chat = ctx.chat

    def prompt(self, record: Record) -> list[dict[str, str]]:
        content = self.template.render(
            instruction=record.instruction, input=record.input, output=record.output, passage=passage(record)
        )
        return [{"role": "user", "content": content}]

    def judge(self, records: list[Record]) -> list[Verdict]:
        if self.chat is None:
            raise RuntimeError("judge: setup(ctx) was not called with a chat client before judge()")
        # A rubric about the passage judges only the rows that have one; the others are kept.
        asked = [i for i, r in enumerate(records) if passage(r) or not self.needs_passage]
        answers = self.chat([self.prompt(records[i]) for i in asked], dict(self.request)) if asked else []
        if len(answers) != len(asked):
            raise RuntimeError(f"judge: the chat client returned {len(answers)} answers for {len(asked)} requests")
        out = [KEEP] * len(records)
        for i, answer in zip(asked, answers, strict=True):
            out[i] = self._verdict(answer)
        return out

    def _verdict(self, answer: str | None) -> Verdict:
        scores = parse_scores(answer, self.criteria)
        if scores is None:
            return drop("judge_failed", answer=(answer or "")[:200]) if self.on_error == "drop" else KEEP
        mean = round(sum(scores.values()) / len(scores), 3)
        named = {"judge": mean, **{f"judge_{c}": float(v) for c, v in scores.items()}}
        return drop("low_judge_score", **named) if mean < self.threshold else Verdict(keep=True, scores=named)


def passage(record: Record) -> str:
    """The document passage a row was made from (`meta.source.text`), "" for none."""
    source = record.meta.get("source")
    text = source.get("text") if isinstance(source, dict) else None
    return text if isinstance(text, str) else ""


def _criteria(path: Path, given: object) -> tuple[str, ...]:
    if isinstance(given, str):
        given = [given]
    if (
        not isinstance(given, (list, tuple))
        or not given
        or not all(isinstance(c, str) and _CRITERION.match(c) for c in given)
    ):
        raise ValueError(
            f"judge: template {path}: `criteria` in its metadata must be a list of lowercase names "
            f"(letters, digits, _), got {given!r}"
        )
    return tuple(given)
