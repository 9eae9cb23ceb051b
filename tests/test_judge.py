"""The LLM judge: rubric rendering, answer parsing and thresholds with a recorded fake chat client,
then a real score from the real vLLM server."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from filters.base import Chain, FilterContext
from filters.judge import RESPONSE_FORMAT, LLMJudge, parse_scores
from filters.specs import parse_specs
from generator.core.errors import ConfigError
from generator.core.records import Record

RECORD = Record("Give the capital of France.", "", "The capital of France is Paris.")


class FakeChat:
    """Answers each request with the next canned text and records what it was asked."""

    def __init__(self, answers: list[str | None]):
        self.answers = answers
        self.calls: list[tuple[list[list[dict[str, str]]], dict[str, Any]]] = []

    def __call__(self, conversations: list[list[dict[str, str]]], extra: dict[str, Any]) -> list[str | None]:
        self.calls.append((conversations, extra))
        return self.answers[: len(conversations)]


@pytest.mark.parametrize(
    ("text", "scores"),
    [
        ('{"helpfulness": 5, "correctness": 4, "clarity": 3}', {"helpfulness": 5, "correctness": 4, "clarity": 3}),
        (
            'Sure: {"helpfulness": 2, "correctness": 2, "clarity": 5} hope it helps',
            {"helpfulness": 2, "correctness": 2, "clarity": 5},
        ),
        ('{"helpfulness": 5, "correctness": 4, "clar', None),  # cut off at max_tokens
        ('{"helpfulness": 6, "correctness": 4, "clarity": 3}', None),  # out of range
        ('{"helpfulness": true, "correctness": 4, "clarity": 3}', None),
        ('{"helpfulness": 5, "correctness": 4}', None),
        ("[1, 2, 3]", None),
        ("", None),
        (None, None),
    ],
    ids=["json", "wrapped", "truncated", "out-of-range", "bool", "missing", "list", "empty", "failed"],
)
def test_parse_scores(text: str | None, scores: dict[str, int] | None) -> None:
    assert parse_scores(text) == scores


def test_renders_rubric_and_asks_for_schema() -> None:
    chat = FakeChat(['{"helpfulness": 5, "correctness": 5, "clarity": 4}'])
    judge = LLMJudge(max_tokens=50)
    judge.setup(FilterContext(chat=chat))
    [v] = judge.judge([RECORD.with_(input="Europe")])
    [(conversations, extra)] = chat.calls
    prompt = conversations[0][0]["content"]
    assert conversations[0][0]["role"] == "user"
    assert "Give the capital of France." in prompt and "The capital of France is Paris." in prompt
    assert "### Input\nEurope" in prompt
    assert extra == {"response_format": RESPONSE_FORMAT, "max_tokens": 50, "temperature": 0.0}
    assert v.keep and v.scores == {
        "judge": 4.667,
        "judge_helpfulness": 5.0,
        "judge_correctness": 5.0,
        "judge_clarity": 4.0,
    }


def test_input_section_only_when_there_is_input() -> None:
    assert "### Input" not in LLMJudge().prompt(RECORD)[0]["content"]


@pytest.mark.parametrize(
    ("answer", "on_error", "keep", "reason"),
    [
        ('{"helpfulness": 3, "correctness": 4, "clarity": 4}', "drop", True, ""),  # mean 3.667 >= 3.5
        ('{"helpfulness": 3, "correctness": 3, "clarity": 4}', "drop", False, "low_judge_score"),
        ('{"helpfulness": 3', "drop", False, "judge_failed"),
        (None, "keep", True, ""),
    ],
    ids=["above", "below", "unreadable-drop", "failed-keep"],
)
def test_threshold_and_errors(answer: str | None, on_error: str, keep: bool, reason: str) -> None:
    judge = LLMJudge(threshold=3.5, on_error=on_error)
    judge.setup(FilterContext(chat=FakeChat([answer])))
    [v] = judge.judge([RECORD])
    assert (v.keep, v.reason) == (keep, reason)


def test_scores_land_in_record_meta_through_the_chain() -> None:
    judge = LLMJudge()
    judge.setup(FilterContext(chat=FakeChat(['{"helpfulness": 4, "correctness": 4, "clarity": 4}'])))
    [kept] = Chain([judge]).run([RECORD]).kept
    assert kept.meta["scores"]["judge"] == 4.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 7}, r"\[0\]\.threshold': Input should be less than or equal to 5 \(got 7\)"),
        ({"on_error": "retry"}, r"\[0\]\.on_error': Input should be 'drop' or 'keep' \(got 'retry'\)"),
        ({"max_tokens": 4}, r"\[0\]\.max_tokens': Input should be greater than or equal to 16 \(got 4\)"),
    ],
    ids=["threshold", "on-error", "max-tokens"],
)
def test_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"key 'filters\.records" + message):
        parse_specs([{"name": "judge", **kwargs}], where="filters.records")


def test_missing_template_is_named() -> None:
    with pytest.raises(ValueError, match=r"'no_such_rubric.jinja' is neither a file nor a built-in"):
        LLMJudge(template="no_such_rubric.jinja")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Rate {{ instruction }} for {{ audience }}", r"uses \['audience'\].*can only use"),
        ("Rate {{ instruction ", r"is not valid Jinja"),
    ],
    ids=["unknown-variable", "syntax"],
)
def test_template_checked_when_built(tmp_path: Path, source: str, message: str) -> None:
    path = tmp_path / "rubric.jinja"
    path.write_text(source)
    with pytest.raises(ValueError, match=message):
        LLMJudge(template=str(path))


def test_template_is_sandboxed(tmp_path: Path) -> None:
    path = tmp_path / "rubric.jinja"
    path.write_text("{{ instruction.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(Exception, match="unsafe|access to attribute"):
        LLMJudge(template=str(path)).prompt(RECORD)


def test_judge_without_chat_says_how_to_wire_it() -> None:
    with pytest.raises(RuntimeError, match=r"FilterContext\(chat=\.\.\.\)"):
        LLMJudge().setup(FilterContext())


def http_batch_chat(base_url: str, api_key: str | None, model: str):
    """A BatchChat over the OpenAI-compatible API with the standard library (the pipeline passes its
    engine's own)."""

    def one(messages: list[dict[str, str]], extra: dict[str, Any]) -> str | None:
        body = json.dumps({"model": model, "messages": messages, **extra}).encode()
        req = urllib.request.Request(
            f"{base_url}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key or 'none'}"},
        )
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.load(resp)["choices"][0]["message"]["content"]

    def chat(conversations: list[list[dict[str, str]]], extra: dict[str, Any]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda m: one(m, extra), conversations))

    return chat


@pytest.mark.vllm
def test_judge_scores_with_real_server(vllm_server) -> None:
    chat = http_batch_chat(vllm_server.base_url, vllm_server.api_key, vllm_server.model)
    judge = LLMJudge(threshold=1.0, max_tokens=64)  # the tiny model's taste is not under test
    judge.setup(FilterContext(chat=chat))
    records = [RECORD, Record("List three primary colors.", "", "Red, blue and yellow.")]
    verdicts = judge.judge(records)
    for v in verdicts:
        assert v.keep, v  # the schema-constrained answer parses into scores
        assert 1.0 <= v.scores["judge"] <= 5.0
        assert set(v.scores) == {"judge", "judge_helpfulness", "judge_correctness", "judge_clarity"}


RUBRIC = (
    "You are grading one example for an instruction-tuning dataset. Read the instruction, the optional input "
    "and the response, then score the example from 1 (very poor) to 5 (excellent) on each criterion:\n\n"
    "- helpfulness: does the response do what the instruction asks, completely and usefully?\n"
    "- correctness: is the response factually and logically right, with no errors or made-up facts?\n"
    "- clarity: is the instruction clear, self-contained and answerable by a text-only assistant?\n\n"
    "### Instruction\nGive the capital of France.\n{input}\n### Response\nThe capital of France is Paris.\n\n"
    'Answer with JSON only: {{"helpfulness": <1-5>, "correctness": <1-5>, "clarity": <1-5>}}\n'
)


@pytest.mark.parametrize(
    ("input", "section"), [("", ""), ("Europe", "\n### Input\nEurope\n")], ids=["no-input", "input"]
)
def test_builtin_rubric_renders_exactly(input: str, section: str) -> None:
    # The metadata comment at the top of judge.jinja leaves no trace in the message.
    assert LLMJudge().prompt(RECORD.with_(input=input)) == [{"role": "user", "content": RUBRIC.format(input=section)}]


def test_rubric_without_metadata_still_works(tmp_path: Path) -> None:
    path = tmp_path / "rubric.jinja"
    path.write_text("Rate:\n{{ instruction }}\n{% if input %}\n{{ input }}\n{% endif %}\n-> {{ output }}\n")
    assert (
        LLMJudge(template=str(path)).prompt(RECORD)[0]["content"]
        == "Rate:\nGive the capital of France.\n\n-> The capital of France is Paris.\n"
    )


def test_templates_render_shows_what_the_judge_sends() -> None:
    from generator.prompting.templates import load_template, render

    values = {"instruction": RECORD.instruction, "input": "Europe", "output": RECORD.output}
    assert render(load_template("judge"), values) == LLMJudge().prompt(RECORD.with_(input="Europe"))


# -- the faithfulness rubric: rows made from a document passage -----------------------------------

PASSAGE = "The cache keeps 512 entries. Entries older than ten minutes are evicted first."


def _from_passage(output: str, text: str | None = PASSAGE) -> Record:
    source = {"document": "notes.md", "chunk": 0} | ({"text": text} if text is not None else {})
    return Record("How many entries does the cache keep?", "", output, meta={"source": source})


def test_faithfulness_rubric_shows_the_passage_and_asks_for_its_criteria() -> None:
    chat = FakeChat(['{"faithfulness": 2, "completeness": 4}', '{"faithfulness": 5, "completeness": 4}'])
    judge = LLMJudge(template="judge_faithfulness.jinja", threshold=3.5)
    judge.setup(FilterContext(chat=chat))
    made_up, right = judge.judge([_from_passage("It keeps 4096 entries."), _from_passage("It keeps 512 entries.")])
    [(conversations, extra)] = chat.calls
    assert all(PASSAGE in c[0]["content"] for c in conversations)
    assert "It keeps 4096 entries." in conversations[0][0]["content"]
    schema = extra["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["faithfulness", "completeness"] and not schema["additionalProperties"]
    assert (made_up.keep, made_up.reason, made_up.detail["judge_faithfulness"]) == (False, "low_judge_score", 2.0)
    assert right.keep and right.scores == {"judge": 4.5, "judge_faithfulness": 5.0, "judge_completeness": 4.0}


def test_faithfulness_rubric_keeps_rows_without_a_passage_unasked() -> None:
    chat = FakeChat(['{"faithfulness": 1, "completeness": 1}'])
    judge = LLMJudge(template="judge_faithfulness.jinja")
    judge.setup(FilterContext(chat=chat))
    plain, no_text, with_text = judge.judge([RECORD, _from_passage("512.", text=None), _from_passage("4096.")])
    assert plain.keep and no_text.keep and not with_text.keep
    [(conversations, _)] = chat.calls
    assert len(conversations) == 1 and "4096." in conversations[0][0]["content"]


def test_default_rubric_asks_every_row_even_with_a_passage() -> None:
    chat = FakeChat(['{"helpfulness": 5, "correctness": 5, "clarity": 5}'] * 2)
    judge = LLMJudge()
    judge.setup(FilterContext(chat=chat))
    assert [v.keep for v in judge.judge([RECORD, _from_passage("512.")])] == [True, True]
    assert len(chat.calls[0][0]) == 2 and chat.calls[0][1]["response_format"] == RESPONSE_FORMAT


@pytest.mark.parametrize("criteria", ["[]", "[Faithful Ness]", "{a: 1}", "[ok, 3]"])
def test_a_rubric_with_bad_criteria_is_refused(tmp_path: Path, criteria: str) -> None:
    rubric = tmp_path / "rubric.jinja"
    rubric.write_text(f"{{#---\ncriteria: {criteria}\n---#}}\nScore {{{{ output }}}}")
    with pytest.raises(ValueError, match=r"`criteria` in its metadata must be a list of lowercase names"):
        LLMJudge(template=str(rubric))
