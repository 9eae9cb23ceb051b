"""Checks that can be verified, in a run: `generation.constraints` words constraints into the
instructions and the `constraints` filter drops answers that break them; with preference pairs
a failing answer is the rejected one; `generation.response_format` sends the schema with each answer
request and the `schema` filter validates the answers with jsonschema. Against the fake server,
whose answers follow a constraint or not by a rule the test knows."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from fake_run import ECHO_CHAINS, fake_settings

from filters.constraints import CONSTRAINTS, check_all, conflicts
from filters.schema import SchemaFilter
from generator.config import ReportConfig, parse_config
from generator.core.errors import ConfigError
from generator.core.readers import read_records
from generator.core.records import PREFERENCE, Record
from generator.report.build import Hardware, view_data
from generator.report.html import render
from generator.report.metrics import measure
from generator.report.sources import read_folder
from generator.run.constrain import Constrainer
from generator.run.pipeline import generate

pytestmark = pytest.mark.fake_server

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}


class _OneHot:
    """An embedder for the report's measures that loads no model: one dimension per text's hash."""

    name = "one-hot"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, zlib.crc32(text.encode()) % 64] = 1.0
        return out


def _obeys(prompt: str) -> bool:
    """Whether the fake follows the constraints of this prompt: for about half of them."""
    return zlib.crc32(prompt.encode()) % 2 == 0


def _reply(body: dict[str, Any], i: int) -> str:
    """Answers to constrained prompts follow them or not (`_obeys`; with preferences, the response
    sampled at temperature 0.9 never does); JSON for requests with a schema; echoes otherwise."""
    prompt = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
    if "response_format" in body:
        return '{"answer": "yes", "confidence": 0.5}' if _obeys(prompt) else '{"answer": "yes", "confidence": 2}'
    if "commas" in prompt:
        if body.get("temperature") == 0.9 or not _obeys(prompt):
            return "Well, yes, this answer has commas, several of them."
        return "This answer has none at all."
    return f"echo: {prompt}"


@pytest.fixture(scope="module")
def server() -> Any:
    fake = FakeOpenAI(reply=_reply, record_chats=True)
    fake.start_in_thread()
    yield fake
    fake.stop_thread()


def _run(tmp_path: Path, url: str, **generation: Any) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    data = fake_settings(
        tmp_path / "run",
        url,
        {"filters": {"instructions": ECHO_CHAINS["instructions"]}},
        generation={"instances": "response", "num_instructions": 12, "max_rounds": 2, **generation},
    )
    result = generate(parse_config(data, base_dir=tmp_path), progress=False)
    rows = [r.to_row() for r in read_records([result.dataset_dir])]
    rejected_path = result.run_dir / "rejected.jsonl"
    rejected = [json.loads(line) for line in rejected_path.read_text().splitlines()] if rejected_path.exists() else []
    return result, rows, rejected


def test_constrained_run_words_constraints_and_drops_answers_that_break_them(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    result, rows, rejected = _run(tmp_path, server.url, constraints={"types": ["no_comma"], "per_instruction": 1})
    assert rows, "some answers follow the constraint"
    for row in rows:
        assert row["instruction"].endswith(
            ("Do not use any commas in your response.", "You are not allowed to use any commas.")
        )
        assert row["meta"]["constraints"] == [{"type": "no_comma", "kwargs": {}}]
        assert row["instruction"].startswith(row["meta"]["base_instruction"])
        assert "," not in row["output"]
    dropped = [r for r in rejected if r["filter"] == "constraints"]
    assert dropped and {r["reason"] for r in dropped} == {"constraint_no_comma"}
    assert all(not _obeys(r["record"]["messages"][0]["content"]) for r in dropped)
    funnel = json.loads((result.run_dir / "funnel.json").read_text())
    assert funnel["drops"]["constraints"] == {"constraint_no_comma": len(dropped)}
    checked = len(rows) + len(dropped)
    counts = {"checked": checked, "passed": len(rows)}
    assert funnel["checks"] == {"constraints": {**counts, "types": {"no_comma": counts}}}
    # The card names the checks and their pass rates; so does the report.
    card = (result.dataset_dir / "README.md").read_text()
    rate = f"{100 * len(rows) / checked:.1f}%"
    assert "## Verifiable checks" in card
    assert f"| constraints | `no_comma` | {checked} | {len(rows)} | {rate} |" in card
    inputs = read_folder(result.run_dir, rows=rows)
    page = render(view_data(inputs, measure(rows, encoder=_OneHot(), projection="pca"), ReportConfig(), Hardware()))
    assert 'id="checks-table"' in page
    assert f'<td>constraints</td><td>no_comma</td><td class="num">{checked}</td>' in page and rate in page


def test_a_rerun_words_the_same_constraints_and_sends_nothing(tmp_path: Path, server: FakeOpenAI) -> None:
    settings = {"constraints": {"per_instruction": [1, 3], "share": 0.5}}
    _, first, _ = _run(tmp_path, server.url, **settings)
    served = sum(server.served.values())
    _, again, _ = _run(tmp_path, server.url, **settings)
    assert sum(server.served.values()) == served
    assert [(r["instruction"], r["meta"].get("constraints")) for r in again] == [
        (r["instruction"], r["meta"].get("constraints")) for r in first
    ]


def test_with_preference_pairs_the_answer_that_breaks_a_constraint_is_rejected(
    tmp_path: Path, server: FakeOpenAI
) -> None:
    prefs = {"responses": 2, "sampling": [{"temperature": 0.1}, {"temperature": 0.9}], "judge": None}
    result, rows, _ = _run(
        tmp_path, server.url, constraints={"types": ["no_comma"], "per_instruction": 1}, preferences=prefs
    )
    assert rows
    for row in rows:
        rejected = row["meta"][PREFERENCE]["rejected"]
        assert "," in rejected and "," not in row["output"]
        assert row["meta"][PREFERENCE]["scores"][1]["reason"] == "constraint_no_comma"
    # The responses' checks are counted apart from the record chain's (which sees the chosen ones).
    checks = json.loads((result.run_dir / "funnel.json").read_text())["checks"]
    responses = checks["constraints (responses)"]
    assert responses["checked"] >= 2 * len(rows) and responses["passed"] <= responses["checked"] - len(rows)
    assert checks["constraints"] == {
        "checked": len(rows),
        "passed": len(rows),
        "types": {"no_comma": {"checked": len(rows), "passed": len(rows)}},
    }


def test_response_format_is_sent_and_the_schema_filter_validates(tmp_path: Path, server: FakeOpenAI) -> None:
    result, rows, rejected = _run(tmp_path, server.url, response_format=SCHEMA)
    assert rows
    for row in rows:  # the fake answers JSON only to a request that carries `response_format`
        assert json.loads(row["output"])["confidence"] <= 1
    dropped = [r for r in rejected if r["filter"] == "schema"]
    assert dropped and all(r["reason"] == "schema_mismatch" and "confidence" in r["error"] for r in dropped)


def test_schema_filter_reasons() -> None:
    flt = SchemaFilter(SCHEMA)
    outputs = [
        '{"answer": "a", "confidence": 0.2}',
        '```json\n{"answer": "a", "confidence": 1}\n```',
        '{"answer": "a", "confidence": 0.2',  # cut off
        '{"answer": "a"}',
        '{"answer": "a", "confidence": 0.2, "why": "x"}',
    ]
    verdicts = flt.judge([Record("q", "", o) for o in outputs])
    assert [v.reason for v in verdicts] == ["", "", "not_json", "schema_mismatch", "schema_mismatch"]
    assert "confidence" in verdicts[3].detail["error"] and verdicts[3].detail["rule"] == "required"
    assert flt.pass_rates() == {"checked": 5, "passed": 2}


def _gen(**generation: Any) -> dict[str, Any]:
    return {"generation": {"instances": "response", **generation}}


def test_constraints_and_schema_join_the_default_chains() -> None:
    config = parse_config(_gen(constraints={}, response_format=SCHEMA, preferences={"judge": None}))
    assert [s.name for s in config.filters.records][-2:] == ["constraints", "schema"]
    assert [s.name for s in config.generation.preferences.checks][:2] == ["constraints", "schema"]
    # A chain the config writes is its own.
    own = parse_config({**_gen(constraints={}), "filters": {"records": [{"name": "truncated"}]}})
    assert [s.name for s in own.filters.records] == ["truncated"]


@pytest.mark.parametrize(
    ("generation", "match"),
    [
        ({"constraints": {"types": ["rhyme"]}}, r"generation\.constraints\.types\[0\].*got 'rhyme'"),
        ({"constraints": {"per_instruction": [3, 1]}}, "per_instruction"),
        ({"constraints": {"per_instruction": 9}}, "per_instruction"),
        ({"constraints": {"types": []}}, "at least one type"),
        ({"constraints": {"share": 0}}, "share"),
        ({"response_format": {"type": "objekt"}}, "not a valid JSON schema"),
        ({"response_format": SCHEMA, "instances": "self_instruct"}, "set instances: response"),
    ],
)
def test_bad_settings_are_refused_when_the_config_loads(generation: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(_gen(**generation))


@pytest.mark.parametrize("n", range(30))
def test_constrainer_adds_non_conflicting_constraints_the_checkers_read(n: int) -> None:
    config = parse_config(_gen(constraints={"per_instruction": [1, 3]}))
    task = Record(f"Write a short story about a lighthouse keeper number {n}", "", "an old answer")
    out = Constrainer(config.generation.constraints)(task)
    names = [c["type"] for c in out.meta["constraints"]]
    assert 1 <= len(names) <= 3 and "response_language" not in names
    clash = conflicts()
    assert not any(b in clash[a] for a in names for b in names if a != b)
    assert out.output == "" and out.instruction.startswith(task.instruction)
    assert set(check_all(out.meta["constraints"], "x")) == set(names)
    if "repeat_prompt" in names:  # the request to repeat is the whole text before that sentence
        repeat = next(c for c in out.meta["constraints"] if c["type"] == "repeat_prompt")
        assert out.instruction.startswith(repeat["kwargs"]["prompt_to_repeat"] + " ")
    assert set(names) <= set(CONSTRAINTS)


def test_share_leaves_some_instructions_alone() -> None:
    config = parse_config(_gen(constraints={"share": 0.3}))
    constrain = Constrainer(config.generation.constraints)
    tasks = [Record(f"Describe city number {n}.") for n in range(200)]
    constrained = sum(bool(constrain(t).meta.get("constraints")) for t in tasks)
    assert 40 <= constrained <= 80


def test_merged_funnels_add_their_pass_rates() -> None:
    from filters.base import Funnel

    a = {"checked": 4, "passed": 3, "types": {"no_comma": {"checked": 4, "passed": 3}}}
    b = {
        "checked": 2,
        "passed": 1,
        "types": {"no_comma": {"checked": 1, "passed": 1}, "title": {"checked": 1, "passed": 0}},
    }
    one = Funnel.from_dict({"candidates": 4, "kept": 3, "checks": {"constraints": a}})
    one.merge(
        Funnel.from_dict(
            {"candidates": 2, "kept": 1, "checks": {"constraints": b, "schema": {"checked": 1, "passed": 1}}}
        )
    )
    assert one.to_dict()["checks"] == {
        "constraints": {
            "checked": 6,
            "passed": 4,
            "types": {"no_comma": {"checked": 5, "passed": 4}, "title": {"checked": 1, "passed": 0}},
        },
        "schema": {"checked": 1, "passed": 1},
    }
    assert "checks" not in Funnel().to_dict()  # a run without checks writes none
