"""Every format of the field read, written into our dataset and exported back to itself: the rows
must hold the same roles, turns, tool calls, pairs and questions (tiny rows in each file's exact
shape; the real files are described in the issue's SOURCES.md)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from generator.core.readers import read_records, read_rows
from generator.core.records import PREFERENCE
from generator.publish.dataset import DatasetInfo, export, write_dataset

CALL = '{"name": "get_news_headlines", "arguments": {"country": "United States"}}'
TOOLS = (
    '[{"name": "get_news_headlines", "description": "Get the latest news headlines", "parameters": '
    '{"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]}}]'
)

ALPACA_ZH = [
    {"instruction": "保持健康的三个提示。", "input": "", "output": "1. 多运动。"},
    {"instruction": "翻译成英文。", "input": "你好", "output": "Hello"},
]
DOLLY = [
    {
        "instruction": "When was Komorida born?",
        "context": "Born July 10, 1981 [3].",
        "response": "1981",
        "category": "closed_qa",
    },
    {"instruction": "Name a fish.", "context": "", "response": "Tope", "category": "classification"},
]
FASTCHAT = [
    {
        "id": "identity_0",
        "conversations": [{"from": "human", "value": "Who are you?"}, {"from": "gpt", "value": "Vicuna."}],
    },
    {
        "id": "identity_1",
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Your name?"},
            {"from": "gpt", "value": "Vicuna."},
        ],
    },
]
GLAIVE = [
    {
        "conversations": [
            {"from": "human", "value": "What's the news in the US?"},
            {"from": "function_call", "value": CALL},
            {"from": "observation", "value": '{"headlines": ["A", "B"]}'},
            {"from": "gpt", "value": "Here they are: A, B."},
        ],
        "tools": TOOLS,
    },
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}], "tools": "[]"},
]
DPO = [
    {
        "conversations": [{"from": "system", "value": "Be kind.\ufeff"}, {"from": "human", "value": "Say hi."}],
        "chosen": {"from": "gpt", "value": "Hi!"},
        "rejected": {"from": "gpt", "value": "No."},
    },
    {
        "conversations": [
            {"from": "human", "value": "2+2?"},
            {"from": "gpt", "value": "4"},
            {"from": "human", "value": "times 3?"},
        ],
        "chosen": {"from": "gpt", "value": "12"},
        "rejected": {"from": "gpt", "value": "7"},
    },
]
OPENAI_CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You write recipes."},
            {"role": "user", "content": "Title: Cake"},
            {"role": "assistant", "content": '["flour", "eggs"]'},
        ]
    }
]
OPENAI_TOOLS = [
    {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
            {"role": "assistant", "content": "18C in Paris."},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    }
]
KTO = [
    {"messages": [{"content": "Hi", "role": "user"}, {"content": "Go away.", "role": "assistant"}], "label": False},
    {
        "messages": [
            {"content": "2+2?", "role": "user"},
            {"content": "4", "role": "assistant"},
            {"content": "Sure?", "role": "user"},
            {"content": "Yes.", "role": "assistant"},
        ],
        "label": True,
    },
]
ULTRAFEEDBACK = [
    {
        "prompt": "Name a prime.",
        "prompt_id": "p1",
        "chosen": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}],
        "rejected": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "8"}],
        "messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}],
        "score_chosen": 9.0,
        "score_rejected": 2.0,
    }
]
HH_PROMPT = "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help.\n\nHuman: Why?"
HH = [{"chosen": f"{HH_PROMPT}\n\nAssistant: It's unsafe.", "rejected": f"{HH_PROMPT}\n\nAssistant: Use a pin."}]
MT_BENCH = [
    {
        "question_id": 81,
        "category": "writing",
        "turns": ["Write a blog post about Hawaii.", "Start every sentence with A."],
    },
    {
        "question_id": 111,
        "category": "math",
        "turns": ["What is 3+4?", "And times 2?"],
        "reference": ["7", ""],
    },
]
ARENA = [
    {
        "question_id": "328c149ed45a41c0",
        "category": "arena-hard-v0.1",
        "cluster": "Math",
        "turns": [{"content": "Solve \U0001d45a\u200b\u00a0x\tnow"}],
    }
]
TEXT = [{"prompt": "Rephrase: the cat sat\\n", "completion": "The cat was sitting."}]


def _json(items: list[dict[str, Any]]) -> str:
    return json.dumps(items, ensure_ascii=False, indent=2)


def _jsonl(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)


def _exported(path: Path, fmt: str, tmp_path: Path) -> list[dict[str, Any]]:
    records = read_records([path])
    write_dataset(
        records, tmp_path / "ds", DatasetInfo(name="t", model="m"), test_ratio=0.0, split_seed=0, save_to_disk=False
    )
    out = tmp_path / f"out.{fmt}"
    assert export(tmp_path / "ds", fmt, out) == len(records)
    text = out.read_text(encoding="utf-8")
    return json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]


def _parsed_tools(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ShareGPT's JSON-in-a-string values compared as JSON."""
    out = []
    for item in items:
        turns = [
            {**t, "value": json.loads(t["value"])} if t["from"] == "function_call" else t for t in item["conversations"]
        ]
        out.append({**item, "conversations": turns, "tools": json.loads(item["tools"])})
    return out


def _ultrafeedback(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"prompt": i["chosen"][:-1], "chosen": i["chosen"][-1:], "rejected": i["rejected"][-1:]} for i in items]


def _fastchat(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"conversations": i["conversations"]} for i in items]  # the source's `id` stays in meta


# (id, file name, text, export format, how the original reads as the export should)
CASES = [
    ("alpaca_zh", "alpaca_zh.json", _json(ALPACA_ZH), "alpaca", None),
    ("dolly", "dolly.jsonl", _jsonl(DOLLY), "dolly", None),
    ("fastchat", "fastchat.json", _json(FASTCHAT), "sharegpt", _fastchat),
    ("glaive_toolcall", "glaive.json", _json(GLAIVE), "sharegpt", _parsed_tools),
    ("llamafactory_dpo", "dpo.json", _json(DPO), "sharegpt", None),
    ("openai_chat", "recipe.jsonl", _jsonl(OPENAI_CHAT), "chat", None),
    ("openai_tools", "tools.jsonl", _jsonl(OPENAI_TOOLS), "chat", None),
    ("kto", "kto.json", _json(KTO), "chat", None),
    ("ultrafeedback", "uf.jsonl", _jsonl(ULTRAFEEDBACK), "preference", _ultrafeedback),
    ("mt_bench", "mt_bench.jsonl", _jsonl(MT_BENCH), "questions", None),
    ("arena_hard", "arena.jsonl", _jsonl(ARENA), "questions", None),
    ("text", "rephrase.jsonl", _jsonl(TEXT), "text", None),
]


@pytest.mark.parametrize(("name", "fmt", "expected"), [(c[1], c[3], c[4]) for c in CASES], ids=[c[0] for c in CASES])
def test_round_trip(tmp_path: Path, name: str, fmt: str, expected: Any) -> None:
    text = next(c[2] for c in CASES if c[1] == name)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    original = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
    out = _exported(path, fmt, tmp_path)
    if fmt == "sharegpt" and expected is _parsed_tools:
        out = _parsed_tools(out)
    assert out == (expected(original) if expected else original)


def test_hh_rlhf_gzip_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl(HH).encode()))
    [record] = read_records([path])
    assert [m["role"] for m in record.messages] == ["user", "assistant", "user", "assistant"]
    assert (record.messages[-1]["content"], record.meta[PREFERENCE]["rejected"]) == ("It's unsafe.", "Use a pin.")
    assert _exported(path, "hh", tmp_path) == HH


def test_cohere_roles_and_tool_messages(tmp_path: Path) -> None:
    path = tmp_path / "science.jsonl"
    path.write_text(_jsonl([{"messages": [{"role": "User", "content": "Q?"}, {"role": "Chatbot", "content": "A."}]}]))
    assert read_records([path])[0].messages == [
        {"role": "user", "content": "Q?"},
        {"role": "assistant", "content": "A."},
    ]
    path = tmp_path / "glaive.json"
    path.write_text(_json(GLAIVE), encoding="utf-8")
    tools, plain = read_records([path])
    call = {
        "id": None,
        "type": "function",
        "function": {"name": "get_news_headlines", "arguments": '{"country": "United States"}'},
    }
    assert tools.messages[1:3] == [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": '{"headlines": ["A", "B"]}'},
    ]
    assert tools.tools[0]["function"]["name"] == "get_news_headlines" and plain.tools == []


def test_leval_instructions_with_a_column_map(tmp_path: Path) -> None:
    row = {"instructions": ["Who?", "When?"], "outputs": ["Ann", "1990"], "input": "A long document.", "source": "x"}
    path = tmp_path / "leval.jsonl"
    path.write_text(_jsonl([row, row]), encoding="utf-8")
    rows = list(read_rows(path, columns={"instruction": "instructions", "output": "outputs"}))
    assert [(r.instruction, r.output, r.input) for r in rows[:2]] == [
        ("Who?", "Ann", "A long document."),
        ("When?", "1990", "A long document."),
    ]
    assert len(rows) == 4 and rows[1].where.endswith("line 1 item 2")


def test_alpaca_eval_pairwise(tmp_path: Path) -> None:
    rows = [
        {
            "instruction": "Q",
            "output_1": "a",
            "generator_1": "g1",
            "output_2": "b",
            "generator_2": "g2",
            "preference": 1.8,
        },
        {
            "instruction": "R",
            "output_1": "c",
            "generator_1": "g1",
            "output_2": "d",
            "generator_2": "g2",
            "preference": 1.2,
        },
    ]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(rows, separators=(",", ":")), encoding="utf-8")
    first, second = read_records([path])
    assert (first.output, first.meta[PREFERENCE]["rejected"]) == ("b", "a")
    assert (second.output, second.meta[PREFERENCE]["rejected"]) == ("c", "d")


def test_dedup_and_decontaminate_keep_splits(tmp_path: Path) -> None:
    from generator.config import ReportConfig
    from generator.core.records import Record
    from generator.run.clean import decontaminate, dedup

    off = ReportConfig(enabled=False)  # the report's embedding measures would be most of the time

    train = [Record(f"Train task {i}.", "", "a") for i in range(3)]
    test = [Record("Train task 0.", "", "a"), Record("Test task.", "", "b")]
    write_dataset(
        {"train": train, "test": test}, tmp_path / "ds", DatasetInfo(name="t", model="m"), test_ratio=0.0, split_seed=0
    )
    result = dedup([tmp_path / "ds"], tmp_path / "dd", semantic=False, report=off)
    assert "1 of the dropped rows duplicate a row of an earlier split" in result.summary()
    assert "report:" not in result.summary() and not (result.dataset_dir / "report.html").exists()
    kept = {s: [r.instruction for r in read_records([tmp_path / "dd"], split=s)] for s in ("train", "test")}
    assert kept == {"train": [r.instruction for r in train], "test": ["Test task."]}
    ref = tmp_path / "ref.jsonl"
    ref.write_text(_jsonl([{"question_id": 1, "turns": ["Train task 1."]}]), encoding="utf-8")
    decontaminate([tmp_path / "ds"], [str(ref)], tmp_path / "dc", ngram=13, threshold=None, report=off)
    train_left = [r.instruction for r in read_records([tmp_path / "dc"], split="train")]
    assert train_left == ["Train task 0.", "Train task 2."]
    assert [r.instruction for r in read_records([tmp_path / "dc"], split="test")] == ["Train task 0.", "Test task."]


def test_inspect_says_where_each_key_goes(tmp_path: Path) -> None:
    from generator.core.inspect import inspect_source

    path = tmp_path / "kto.json"
    path.write_text(_json(KTO), encoding="utf-8")
    found = inspect_source(path)
    assert (dict(found.formats), dict(found.splits)) == ({"chat": 2}, {"train": 2})
    assert found.keys == {"messages": "messages", "label": "meta.label"}
    assert len(found.samples) == 2 and "format: chat (2 rows)" in found.summary()


def test_kto_rows_are_written_as_trl_unpaired_preference_data(tmp_path: Path) -> None:
    """A KTO file through `dedup` gives `prompt`/`completion`/`label` columns that KTOTrainer
    prepares (tokenizes, pairs with KL completions) and batches as they are; no training step (one
    takes minutes on CPU)."""
    import datasets

    trl = pytest.importorskip("trl")
    from generator.config import ReportConfig
    from generator.llm.model import prepare_bundled_model
    from generator.run.clean import dedup

    path = tmp_path / "kto.json"
    path.write_text(_json(KTO), encoding="utf-8")
    dedup([path], tmp_path / "dd", semantic=False, report=ReportConfig(enabled=False))
    train = datasets.load_dataset(str(tmp_path / "dd" / "dataset"))["train"]
    assert train.features["label"] == datasets.Value("bool")
    assert [(r["prompt"] + r["completion"], r["label"]) for r in train] == [(k["messages"], k["label"]) for k in KTO]
    assert train["meta"][0]["extra"] is None  # the label is a column, not meta
    assert [r.label for r in read_records([tmp_path / "dd"])] == [False, True]  # and reads back

    args = trl.KTOConfig(
        output_dir=str(tmp_path / "kto"),
        per_device_train_batch_size=2,
        max_length=64,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
    )
    trainer = trl.KTOTrainer(model=str(prepare_bundled_model()), args=args, train_dataset=train)
    prepared = trainer.train_dataset
    decode = trainer.processing_class.decode
    assert [decode(ids) for ids in prepared["completion_ids"]][0].startswith("Go away.")
    assert {"KL_completion_ids", "label"} <= set(prepared.column_names) and prepared["label"] == [False, True]
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(batch["label"].tolist()) == [False, True] and batch["completion_mask"].sum() > 0
