"""Multi-turn conversations (`generation.turns`) against the fake server, whose answers echo the
prompt, so every message of a conversation can be checked exactly: each answer is the echo of the
user message before it, each later user message the echo of the `user_turn` prompt (cut where the
shown conversation reaches an assistant line). A middle turn made to fail (a 400 scripted into its
prompt, a blocked word) drops the conversation or ends it, as configured, and is counted; a run
killed mid-conversation resumes to the same conversations."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, _variant
from fake_run import fake_process, fake_settings

from generator.config import parse_config
from generator.prompting.templates import load_template, render
from generator.publish.dataset import export, read_rows
from generator.run.pipeline import generate

EXE = str(Path(sys.executable).parent / "instructforge")
FAKE_OPTIONS = {"variants": True, "record_chats": True}
RUN = {
    "sampling": {"max_tokens": 5000},  # echoes of whole conversations are long
    "engine": {"concurrency": 8, "stop_grace_s": 0.5},
    "generation": {"num_instructions": 8, "instances": "response"},
    # The fake server echoes prompts: keep the chains to what such text passes.
    "filters": {"instructions": [{"name": "length", "max_words": 5000}, {"name": "exact_dedup"}], "records": []},
}


def _config(run_dir: Path, url: str, records: list[dict[str, Any]] | None = None, **generation: Any) -> Any:
    filters = {"records": [{"name": "truncated"}, *(records or [])]}
    return parse_config(
        fake_settings(run_dir, url, RUN, generation=generation, filters=filters), base_dir=run_dir.parent
    )


def _echo(prompt: str) -> str:
    return "echo: " + _variant({}, prompt)


def _alternates(messages: list[dict[str, str]]) -> bool:
    return [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)


def _funnel(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "funnel.json").read_text())


def _adds_up(funnel: dict[str, Any]) -> bool:
    return funnel["candidates"] == funnel["kept"] + sum(sum(r.values()) for r in funnel["drops"].values())


# A user_turn template that shows the whole conversation without speaker labels, so that the fake
# server's echo (the user's next message) holds all of it.
SHOWING_TEMPLATE = """{#---
description: test - the conversation so far, shown whole
produces: user_turn
parser: user_turn
variables:
  conversation: the conversation so far
---#}
{% block user %}
Next message after:
{% for m in conversation %}
[{{ m.role }}] {{ m.content }}
{% endfor %}
{% endblock %}
"""


def test_conversations_have_every_turn_in_turn(tmp_path: Path, fake: FakeOpenAI) -> None:
    (tmp_path / "showing.jinja").write_text(SHOWING_TEMPLATE)
    config = _config(tmp_path / "run", fake.url, turns=3, templates={"user_turn": "showing.jinja"})
    result = generate(config, progress=False)
    rows = read_rows(result.dataset_dir)
    tpl = load_template(tmp_path / "showing.jinja")
    system = load_template("response").source.split("{% block system %}")[1].split("{% endblock %}")[0].strip()
    assert len(rows) == 8
    for row in rows:
        messages = row["messages"]
        assert len(messages) == 6 and _alternates(messages)
        assert messages[0]["content"] == row["instruction"] and messages[1]["content"] == row["output"]
        for k in (2, 4):
            user, answer = messages[k]["content"], messages[k + 1]["content"]
            # The user's message is the model's answer to the user_turn prompt of the conversation so far.
            prompt = render(tpl, {"conversation": messages[:k]})[-1]["content"]
            assert user == _echo(prompt).strip()
            assert answer == _echo(user)
            # ... and the answer was asked with the whole conversation, after the first answer's system prompt.
            assert [{"role": "system", "content": system}, *messages[: k + 1]] in fake.chats
        assert json.loads(row["meta"]["extra"])["user_turns"] == 3
    assert len({r["id"] for r in rows}) == 8
    assert _adds_up(_funnel(result.run_dir))
    # The exports carry the whole conversation.
    export(result.dataset_dir, "sharegpt", tmp_path / "sg.json")
    shared = json.loads((tmp_path / "sg.json").read_text())
    assert [[t["from"] for t in c["conversations"]] for c in shared] == [["human", "gpt"] * 3] * 8
    assert [t["value"] for t in shared[0]["conversations"]] == [m["content"] for m in rows[0]["messages"]]
    export(result.dataset_dir, "chat", tmp_path / "chat.jsonl")
    chats = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert [c["messages"] for c in chats] == [r["messages"] for r in rows]
    card = (result.dataset_dir / "README.md").read_text()
    assert "User turns per conversation: 3 (8 rows)" in card and "**User** (turn 3)" in card


def test_the_user_is_the_persona_of_the_custom_method(tmp_path: Path, fake: FakeOpenAI) -> None:
    """With `custom`, the built-in user_turn prompt is given the persona and topic the task was drawn for."""
    custom = {"topics": ["tea", "maps"], "personas": ["a retired sailor", "a nurse"], "difficulties": ["easy"]}
    config = _config(tmp_path / "run", fake.url, turns=2, method="custom", custom=custom)
    rows = read_rows(generate(config, progress=False).dataset_dir)
    tpl = load_template("user_turn")
    assert rows
    for row in rows:
        meta = json.loads(row["meta"]["extra"])
        assert meta["persona"] in custom["personas"] and meta["topic"] in custom["topics"]
        asked = render(tpl, {"conversation": row["messages"][:2], "persona": meta["persona"], "goal": meta["topic"]})
        assert asked in fake.chats
        assert meta["persona"] in asked[0]["content"] and meta["topic"] in asked[0]["content"]
        assert len(row["messages"]) == 4 and row["messages"][2]["content"].startswith("echo: ")


def test_a_single_turn_run_is_as_before(tmp_path: Path, fake: FakeOpenAI) -> None:
    result = generate(_config(tmp_path / "run", fake.url), progress=False)
    fingerprint = json.loads((result.run_dir / "fingerprint.json").read_text())
    generation = fingerprint.get("generation", {})
    assert "turns" not in generation and "user_turn" not in generation.get("templates", {})
    stages = {json.loads(line)["meta"]["stage"] for line in (result.run_dir / "results.jsonl").read_text().splitlines()}
    assert stages == {"instructions", "response"}
    assert all(len(r["messages"]) == 2 for r in read_rows(result.dataset_dir))


# A user_turn template that makes turn 2 fail a filter (a blocked word) for conversations whose first
# message has a length divisible by 3, and turn 3's request fail (a 400) for the other odd ones.
FAILING_TEMPLATE = """{#---
description: test - fails some middle turns on purpose
produces: user_turn
parser: user_turn
variables:
  conversation: the conversation so far
  turn: the turn to write
---#}
{% block user %}
{% set n = conversation[0].content | length %}
Next message {{ turn }}{% if turn == 2 and n % 3 == 0 %} forbiddenword{% endif %}
{% if turn == 3 and n % 3 and n % 2 %} #faults=400{% endif %}
{% endblock %}
"""


def _fate(first_message: str) -> tuple[int, str, str]:
    """Messages a conversation keeps when truncated, the stage that failed, and why."""
    n = len(first_message)
    if n % 3 == 0:
        return 2, "blocklist", "blocked_keyword"
    if n % 2:
        return 4, "user_turn", "user_turn_request_failed"
    return 8, "", ""


def _failing_run(tmp_path: Path, url: str, mode: str) -> tuple[list[dict[str, Any]], dict[str, Any], Path]:
    (tmp_path / "failing.jinja").write_text(FAILING_TEMPLATE)
    config = _config(
        tmp_path / mode,
        url,
        records=[{"name": "blocklist", "words": ["forbiddenword"]}],
        turns=4,
        turn_failure=mode,
        num_instructions=12,
        templates={"user_turn": "failing.jinja"},
    )
    result = generate(config, progress=False)
    funnel = _funnel(result.run_dir)
    assert _adds_up(funnel)
    return read_rows(result.dataset_dir), funnel, result.run_dir


def test_a_failing_middle_turn_is_handled_as_configured(tmp_path: Path, fake: FakeOpenAI) -> None:
    rows, funnel, run_dir = _failing_run(tmp_path, fake.url, "truncate")
    # truncate: every conversation is kept, ended before the turn that failed, and counted by reason.
    assert len(rows) == 12
    expected: dict[str, int] = {}
    for row in rows:
        size, _, reason = _fate(row["messages"][0]["content"])
        assert len(row["messages"]) == size and _alternates(row["messages"])
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert len(expected) == 2  # both kinds of failure happened, and some conversations got through
    assert funnel["shortened"]["turns"] == expected and "turns" not in funnel["drops"]
    # The turn the blocklist dropped is in rejected.jsonl, with its turn and conversation.
    rejected = [json.loads(line) for line in (run_dir / "rejected.jsonl").read_text().splitlines()]
    blocked = [r for r in rejected if r["reason"] == "blocked_keyword"]
    assert len(blocked) == expected["blocked_keyword"]
    assert all(r["record"]["meta"]["turn"] == 2 and "forbiddenword" in r["record"]["instruction"] for r in blocked)
    card = (run_dir / "dataset" / "README.md").read_text()
    assert "Conversations kept without a later turn that failed" in card

    # drop: the same conversations fail, and each is dropped with its reason.
    dropped_rows, dropped_funnel, _ = _failing_run(tmp_path, fake.url, "drop")
    assert [r["messages"] for r in dropped_rows] == [r["messages"] for r in rows if len(r["messages"]) == 8]
    assert dropped_funnel["drops"]["turns"] == expected and "shortened" not in dropped_funnel
    assert dropped_funnel["kept"] == len(dropped_rows) == 12 - sum(expected.values())


# -- resume after kill -9 mid-conversation ---------------------------------------------------------


@pytest.fixture(scope="module")
def slow_fake_url() -> Iterator[str]:
    with fake_process("--delay", "0.3", "--variants") as url:
        yield url


def _config_file(tmp_path: Path, url: str, name: str) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    settings = fake_settings(
        tmp_path / name,
        url,
        RUN,
        engine={"concurrency": 4},
        generation={"turns": 3},
        filters={"records": [{"name": "truncated"}]},
    )
    cfg.write_text(json.dumps(settings))
    return cfg


def _conversations(run_dir: Path) -> list[list[dict[str, str]]]:
    return sorted((r["messages"] for r in read_rows(run_dir / "dataset")), key=json.dumps)


def _stored(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


@pytest.mark.subprocess
def test_a_run_killed_mid_conversation_resumes_to_the_same_conversations(
    tmp_path: Path, slow_fake_url: str, fake: FakeOpenAI
) -> None:
    """Killed while the slow server answers; the reference and the resume go to the fast one (the
    same answers: server settings are not in the fingerprint)."""
    ref = subprocess.run([EXE, "generate", "-c", str(_config_file(tmp_path, fake.url, "ref"))], timeout=300)
    assert ref.returncode == 0
    reference = _conversations(tmp_path / "ref")
    assert len(reference) == 8 and all(len(m) == 6 for m in reference)

    cfg = _config_file(tmp_path, slow_fake_url, "run")
    results = tmp_path / "run" / "results.jsonl"
    proc = subprocess.Popen([EXE, "generate", "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # Killed once the second turn has begun: some of its requests stored, the conversations unfinished.
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and re.search(r'"stage": ?"(user_turn|turn)"', results.read_text()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    stages = [r["meta"].get("stage") for r in _stored(tmp_path / "run")]
    assert "user_turn" in stages and stages.count("turn") < 16, "not killed mid-conversation"

    cfg = _config_file(tmp_path, fake.url, "run")
    again = subprocess.run([EXE, "generate", "-c", str(cfg)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _conversations(tmp_path / "run") == reference
    ids = [r["request_id"] for r in _stored(tmp_path / "run") if r["error"] is None]
    assert len(ids) == len(set(ids)), "a request was stored twice"
    # A rerun of the finished run sends nothing.
    before = results.read_text()
    assert subprocess.run([EXE, "generate", "-c", str(cfg)], capture_output=True, timeout=300).returncode == 0
    assert results.read_text() == before


# -- the real server, and the consumers -----------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(vllm_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from generator.config import load_config

    mp = pytest.MonkeyPatch()
    mp.setenv("INSTRUCTFORGE_TEST_KEY_FOR_TURNS", vllm_server.api_key or "")
    try:
        config = load_config(
            "multi-turn.yaml",
            overrides={
                "server.endpoints": [vllm_server.base_url],
                "server.api_key_env": "INSTRUCTFORGE_TEST_KEY_FOR_TURNS",
                # 12 conversations: the bundled model's second user turn is often cut off by
                # max_tokens (the conversation then ends at one turn); 4 once gave none of 2 turns.
                "generation.num_instructions": 12,
                "generation.turns": 2,
                # Short turns: each stage waits for its longest (about 8 tokens/s a sequence here).
                "sampling.max_tokens": 160,
                "report.enabled": False,  # not about the report (tests/fake_run.py: NO_REPORT)
            },
        )
        config.run_dir = tmp_path_factory.mktemp("turns") / "run"
        return generate(config, progress=False)
    finally:
        mp.undo()


@pytest.mark.vllm
def test_the_real_model_holds_conversations_that_trl_reads(real_run: Any, tmp_path: Path) -> None:
    import datasets
    from transformers import AutoTokenizer

    from generator.llm.model import bundled_model_dir

    train = datasets.load_dataset(str(real_run.dataset_dir))["train"]
    conversations = [m for m in train["messages"] if len(m) >= 4]
    assert conversations, f"no conversation of 2 turns or more in {real_run.dataset_dir}"
    assert all(_alternates(m) and all(x["content"].strip() for x in m) for m in train["messages"])
    assert _adds_up(_funnel(real_run.run_dir))
    # The bundled model's chat template takes every conversation, every message in order.
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    for messages in conversations:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        at = 0
        for m in messages:
            at = text.index(m["content"], at) + len(m["content"])
    trl = pytest.importorskip("trl")
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=1,
        per_device_train_batch_size=2,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        max_length=512,
    )
    trainer = trl.SFTTrainer(model=str(bundled_model_dir()), train_dataset=train, args=args)
    assert trainer.train().global_step == 1


# -- conversations as records: written, read back, deduplicated ------------------------------------


def _conversation(first: str, *later: str) -> Any:
    from generator.core.records import Record

    turns = [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(later)]
    return Record(instruction=first, output=f"answer to {first}", meta={"task_type": "generation"}, turns=turns)


def test_conversations_read_back_whole_and_dedup_on_all_their_turns(tmp_path: Path) -> None:
    from filters.dedup import ExactDedup
    from generator.core.readers import read_records
    from generator.publish.dataset import DatasetInfo, write_dataset

    a = _conversation("Plan a picnic.", "For six people?", "Bring sandwiches for six.")
    b = _conversation("Plan a picnic.", "In the rain?", "Take a tarp.")  # same first turn, other follow-up
    same_as_a = _conversation("plan a  picnic", "For six people?", "Bring sandwiches for six.")
    single = _conversation("Name a colour.")
    assert len({a.id, b.id, single.id}) == 3
    verdicts = ExactDedup().judge([a, b, same_as_a, single])
    assert [v.keep for v in verdicts] == [True, True, False, True]
    assert verdicts[2].detail["kept_id"] == a.id

    out = write_dataset(
        [a, b, single],
        tmp_path / "ds",
        DatasetInfo(name="t", model="m"),
        test_ratio=0,
        split_seed=0,
        save_to_disk=False,
    )
    back = read_records([out], format="own")  # as `merge` and `dedup` read a dataset
    assert [(r.id, r.messages) for r in back] == [(r.id, r.messages) for r in (a, b, single)]
    assert "source_id" not in back[0].meta and "conversation" not in back[0].meta
