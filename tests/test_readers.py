"""The one reader (generator/core/readers.py): one table of tiny files in every format, each read by
every function that reads data (seeds, dedup's reader, decontamination's reference loader)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from filters.decontam import load_reference
from filters.dedup import dedup_files, read_records
from generator.core import readers
from generator.core.errors import ConfigError
from generator.core.records import Record, user_content
from generator.prompting.seeds import Instance, load_seeds

# Two tasks, one instance each; the second holds Unicode line breaks (U+2028, U+2029, U+0085) inside
# its strings, which str.splitlines() would split a JSONL line at.
TASKS = [
    ("Name the capital of the country.", "Japan", "Tokyo"),
    ("Say hi\u2028twice.", "", "hi\u2029hi\u0085!"),
]
ALPACA = [{"instruction": i, "input": x, "output": o} for i, x, o in TASKS]


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _write_text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text, encoding="utf-8")


def _csv(path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, ["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(ALPACA)


def _parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ALPACA), path)


def _save_to_disk(path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(ALPACA).save_to_disk(str(path))


def _our_dataset(path: Path) -> None:
    from generator.publish.dataset import DatasetInfo, write_dataset

    records = [Record(i, x, o, meta={"task_type": "qa"}) for i, x, o in TASKS]
    write_dataset(records, path, DatasetInfo(name="t", model="m"), test_ratio=0.0, split_seed=0, save_to_disk=False)


def _hf_folder(path: Path) -> None:
    """A dataset folder `datasets.load_dataset` reads (as a Hub repo would be): data/train.jsonl."""
    (path / "data").mkdir(parents=True)
    (path / "data" / "train.jsonl").write_text(_jsonl(ALPACA), encoding="utf-8")


DOLLY = [{"instruction": i, "context": x, "response": o, "category": "open_qa"} for i, x, o in TASKS]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": user_content(i, x)}, {"from": "gpt", "value": o}]}
    for i, x, o in TASKS
]
CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": user_content(i, x)},
            {"role": "assistant", "content": o},
        ]
    }
    for i, x, o in TASKS
]
NESTED = [
    {"id": f"t{n}", "instruction": i, "instances": [{"input": x, "output": o}], "is_classification": False}
    for n, (i, x, o) in enumerate(TASKS)
]

# (id, file or folder name, writer, chat: the user turn holds the input, so the record has none)
CASES: list[tuple[str, str, Callable[[Path], None], bool]] = [
    ("alpaca-jsonl", "a.jsonl", _write_text(_jsonl(ALPACA)), False),
    ("alpaca-json-array", "a.json", _write_text(json.dumps(ALPACA, ensure_ascii=False, indent=2)), False),
    ("alpaca-csv", "a.csv", _csv, False),
    ("alpaca-parquet", "a.parquet", _parquet, False),
    ("own-rows", "kept.jsonl", _write_text(_jsonl([Record(i, x, o).to_row() for i, x, o in TASKS])), False),
    ("own-dataset-folder", "ds", _our_dataset, False),
    ("save-to-disk", "disk", _save_to_disk, False),
    ("hf-dataset-folder", "hf", _hf_folder, False),
    ("nested-seed-tasks", "seeds.jsonl", _write_text(_jsonl(NESTED)), False),
    ("dolly", "dolly.jsonl", _write_text(_jsonl(DOLLY)), False),
    ("sharegpt", "share.json", _write_text(json.dumps(SHAREGPT, ensure_ascii=False)), True),
    ("openai-chat", "chat.jsonl", _write_text(_jsonl(CHAT)), True),
]


def _expected(chat: bool) -> list[tuple[str, str, str]]:
    return [(user_content(i, x), "", o) if chat else (i, x, o) for i, x, o in TASKS]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bool]:
    _, name, write, chat = request.param
    path = tmp_path / name
    write(path)
    return path, chat


def test_dedup_reader(case: tuple[Path, bool]) -> None:
    path, chat = case
    records = read_records([path])
    assert [(r.instruction, r.input, r.output) for r in records] == _expected(chat)


def test_seeds(case: tuple[Path, bool]) -> None:
    path, chat = case
    tasks = load_seeds(path)
    assert [(t.instruction, t.instances) for t in tasks] == [(i, (Instance(x, o),)) for i, x, o in _expected(chat)]


def test_decontam_references(case: tuple[Path, bool]) -> None:
    path, _ = case
    assert load_reference(str(path)) == [user_content(i, x) for i, x, _ in TASKS]


def test_dedup_reads_its_own_output(case: tuple[Path, bool], tmp_path: Path) -> None:
    """kept.jsonl (written with ensure_ascii=False, so U+2028 raw) reads back with nothing lost."""
    path, chat = case
    first = dedup_files([path], tmp_path / "once", semantic=False)
    again = dedup_files([tmp_path / "once" / "kept.jsonl"], tmp_path / "twice", semantic=False)
    assert [r.to_row() for r in again.kept] == [r.to_row() for r in first.kept]
    assert [(r.instruction, r.input, r.output) for r in again.kept] == _expected(chat)


# ---------------------------------------------------------------------------------------------- schemas


def test_extra_keys_are_kept_in_meta(tmp_path: Path) -> None:
    path = tmp_path / "extra.jsonl"
    path.write_text(_jsonl([{**ALPACA[0], "source": "web", "license": "cc-by"}]), encoding="utf-8")
    [record] = read_records([path])
    assert record.meta == {"source": "web", "license": "cc-by"}
    assert load_seeds(path)[0].instances == (Instance("Japan", "Tokyo"),)


def test_chat_keeps_system_prompt_and_every_turn(tmp_path: Path) -> None:
    turns = [*CHAT[0]["messages"], {"role": "user", "content": "And of Chile?"}, {"role": "assistant", "content": "X"}]
    path = tmp_path / "chat.jsonl"
    path.write_text(_jsonl([CHAT[0], {"messages": turns}]), encoding="utf-8")
    short, long = read_records([path])
    assert (short.system, short.meta, short.messages) == ("Be brief.", {}, CHAT[0]["messages"])
    assert (long.meta, long.messages, long.turns) == ({}, turns, turns[3:])
    assert (long.instruction, long.output) == ("Name the capital of the country.\n\nJapan", "Tokyo")


def test_dolly_category_is_the_task_type(tmp_path: Path) -> None:
    path = tmp_path / "dolly.jsonl"
    path.write_text(_jsonl(DOLLY[:1]), encoding="utf-8")
    assert read_records([path])[0].meta == {"task_type": "open_qa"}
    assert load_seeds(path)[0].task_type == "open_qa"


def test_format_overrides_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(_jsonl([{"instruction": "Name a color.", "output": "Blue", "category": "brainstorm"}]))
    assert read_records([path])[0].meta == {"task_type": "brainstorm"}  # told: dolly
    assert read_records([path], format="alpaca")[0].meta == {"category": "brainstorm"}
    with pytest.raises(ConfigError, match=r"unknown format 'alpacca'; expected one of seed_tasks, own"):
        read_records([path], format="alpacca")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_one_column_map_for_every_reader(tmp_path: Path, suffix: str) -> None:
    rows = [{"prompt": i, "context": x, "answer": o} for i, x, o in TASKS]
    path = tmp_path / f"mapped{suffix}"
    if suffix == ".jsonl":
        path.write_text(_jsonl(rows), encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    columns = {"instruction": "prompt", "input": "context", "output": "answer"}
    records = read_records([path], columns=columns)
    assert [(r.instruction, r.input, r.output) for r in records] == TASKS
    assert [t.instruction for t in load_seeds(path, column_map=columns)] == [t[0] for t in TASKS]


def test_canonical_self_instruct_seed_tasks(tmp_path: Path) -> None:
    """Self-Instruct's data/seed_tasks.jsonl (175 tasks; Alpaca ships the same file) has exactly the
    keys id, name, instruction, instances, is_classification: three tasks of that shape load as they are."""
    tasks = [
        {
            "id": "seed_task_0",
            "name": "breakfast_suggestion",
            "instruction": "Is there anything I can eat for a breakfast that doesn't include eggs?",
            "instances": [{"input": "", "output": "Yes, you can have oatmeal with fruit."}],
            "is_classification": False,
        },
        {
            "id": "seed_task_1",
            "name": "antonym_relation",
            "instruction": "What is the relation between the given pairs?",
            "instances": [{"input": "Night : Day :: Right : Left", "output": "They are opposites."}],
            "is_classification": False,
        },
        {
            "id": "seed_task_2",
            "name": "sentiment",
            "instruction": "Classify the sentiment of the sentence into positive, negative or mixed.",
            "instances": [
                {"input": "I enjoy the flavor of the restaurant.", "output": "Positive"},
                {"input": "The food was cold and the staff rude.", "output": "Negative"},
            ],
            "is_classification": True,
        },
    ]
    path = tmp_path / "seed_tasks.jsonl"
    path.write_text(_jsonl(tasks), encoding="utf-8")
    seeds = load_seeds(path)
    assert [t.id for t in seeds] == ["seed_task_0", "seed_task_1", "seed_task_2"]
    assert seeds[2].is_classification and seeds[2].instances[1] == Instance(
        "The food was cold and the staff rude.", "Negative"
    )
    # dedup: one record per task, every instance kept (nothing dropped silently)
    records = read_records([path])
    assert [r.meta["instances"] for r in records] == [t["instances"] for t in tasks]
    assert records[2].meta["name"] == "sentiment" and records[2].meta["source_id"] == "seed_task_2"
    # decontamination: one text per instance, inputs included
    assert len(load_reference(str(path))) == 4


def test_text_file_is_one_text_a_line(tmp_path: Path) -> None:
    path = tmp_path / "refs.txt"
    path.write_text("Write a haiku.\u2028(about the sea)\r\n\nSort the list.\n", encoding="utf-8")
    assert load_reference(str(path)) == ["Write a haiku.\u2028(about the sea)", "Sort the list."]


def test_every_readme_example_reads_as_its_format(tmp_path: Path) -> None:
    for name, example in readers.EXAMPLES.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(example + "\n", encoding="utf-8")
        [row] = readers.read_rows(path)
        assert row.format == name
        assert row.to_record().instruction


# ---------------------------------------------------------------------------------------------- errors

READERS: list[tuple[str, Callable[[Path], Any]]] = [
    ("seeds", load_seeds),
    ("dedup", lambda p: read_records([p])),
    ("decontam", lambda p: load_reference(str(p))),
]


@pytest.mark.parametrize(("who", "read"), READERS, ids=[r[0] for r in READERS])
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("broken.jsonl", _jsonl(ALPACA[:1]) + '{"instruction": "x",\n', r"broken\.jsonl: line 2: invalid JSON"),
        ("array.json", '[{"instruction": "x"}, 3]', r"array\.json: item 2: expected a JSON object, got int"),
        ("keys.jsonl", '{"label": 1}\n', r"keys\.jsonl: line 1: cannot tell the format from the keys label"),
        ("chat.jsonl", '{"messages": [{"role": "user"}]}\n', r"chat\.jsonl: line 1: turn 1 of 'messages' needs"),
        ("later.jsonl", _jsonl(ALPACA) + '{"output": "x"}\n', r"later\.jsonl: line 3: missing key 'instruction'"),
    ],
    ids=["malformed-line", "array-item", "unknown-shape", "bad-turn", "row-without-instruction"],
)
def test_errors_name_the_file_and_line(
    tmp_path: Path, who: str, read: Callable[[Path], Any], name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as err:
        read(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("who", "read"), READERS[1:], ids=[r[0] for r in READERS[1:]])
def test_a_value_that_cannot_be_text_is_named(tmp_path: Path, who: str, read: Callable[[Path], Any]) -> None:
    path = tmp_path / "int.jsonl"
    path.write_text('{"instruction": 3, "output": "x"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"int\.jsonl: line 1: 'instruction' must be a string, got 3 \(int\)"):
        read(path)


def test_hub_dataset_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants

    # offline mode is read at import time, so the environment variable alone comes too late
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"could not load the Hugging Face dataset 'nobody-here/no-such-set'") as err:
        list(readers.read_rows("hf:nobody-here/no-such-set:test"))
    assert "\n" not in str(err.value)


def test_split_and_config_of_a_local_dataset_folder(tmp_path: Path) -> None:
    """What `hf:owner/name` with a split does on the Hub, on a local copy (no network here)."""
    (tmp_path / "hf" / "data").mkdir(parents=True)
    (tmp_path / "hf" / "data" / "train.jsonl").write_text(_jsonl(ALPACA[:1]), encoding="utf-8")
    (tmp_path / "hf" / "data" / "test.jsonl").write_text(_jsonl(ALPACA[1:]), encoding="utf-8")
    folder = tmp_path / "hf"
    assert [r.instruction for r in readers.read_records([folder], split="test")] == [TASKS[1][0]]
    with pytest.raises(ConfigError, match=r"has no split 'dev'; it has \['train', 'test'\]"):
        readers.read_records([folder], split="dev")


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ('{"task_type": "qa"}', {"task_type": "qa"}),
        ("not json", {"meta": "not json"}),
        (3, {"meta": 3}),
        (None, {}),
    ],
    ids=["json-text", "text", "number", "none"],
)
def test_own_rows_meta_is_never_dropped(tmp_path: Path, meta: Any, expected: dict[str, Any]) -> None:
    path = tmp_path / "own.jsonl"
    path.write_text(_jsonl([{"instruction": "x", "output": "y", "meta": meta}]), encoding="utf-8")
    assert read_records([path])[0].meta == expected
