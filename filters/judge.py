"""LLM-as-judge: the served model scores each instruction-response pair against a rubric (a Jinja
template) and answers in JSON that a schema constrains; pairs under the threshold are dropped."""

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
VARIABLES = frozenset({"instruction", "input", "output"})
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {c: {"type": "integer", "minimum": 1, "maximum": 5} for c in CRITERIA},
    "required": list(CRITERIA),
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "judgement", "schema": SCHEMA}}
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


def parse_scores(text: str | None) -> dict[str, int] | None:
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
    for c in CRITERIA:
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
        self.threshold = threshold
        self.on_error = on_error
        self.request = {"response_format": RESPONSE_FORMAT, "max_tokens": max_tokens, "temperature": temperature}
        self.chat: BatchChat | None = None

    def setup(self, ctx: FilterContext) -> None:
        if ctx.chat is None:
            raise RuntimeError(
                "judge: the filter context has no chat client; the pipeline must pass "
                "FilterContext(chat=...) to setup() before the judge runs"
            )
        self.chat = ctx.chat

    def prompt(self, record: Record) -> list[dict[str, str]]:
        content = self.template.render(instruction=record.instruction, input=record.input, output=record.output)
        return [{"role": "user", "content": content}]

    def judge(self, records: list[Record]) -> list[Verdict]:
        if self.chat is None:
            raise RuntimeError("judge: setup(ctx) was not called with a chat client before judge()")
        answers = self.chat([self.prompt(r) for r in records], dict(self.request))
        if len(answers) != len(records):
            raise RuntimeError(f"judge: the chat client returned {len(answers)} answers for {len(records)} requests")
        out = []
        for answer in answers:
            scores = parse_scores(answer)
            if scores is None:
                out.append(drop("judge_failed", answer=(answer or "")[:200]) if self.on_error == "drop" else KEEP)
                continue
            mean = round(sum(scores.values()) / len(scores), 3)
            named = {"judge": mean, **{f"judge_{c}": float(v) for c, v in scores.items()}}
            if mean < self.threshold:
                out.append(drop("low_judge_score", **named))
            else:
                out.append(Verdict(keep=True, scores=named))
        return out
