"""Seed loading: the bundled set's quality bar, user files (JSONL, CSV, Hugging Face datasets) and the
error message for each kind of bad file."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from generator.core.errors import ConfigError
from generator.core.text import seed_key
from generator.prompting import seeds as seeds_module
from generator.prompting.seeds import TASK_TYPES, Instance, SeedTask, load_seeds

DATA = Path(__file__).parent / "data"
BAD = DATA / "seeds_bad"
GOOD = DATA / "seeds_good"


# ---------------------------------------------------------------------------------------------- builtin


@pytest.fixture(scope="module")
def builtin() -> list[SeedTask]:
    return load_seeds("builtin")


def test_builtin_size_and_unique_ids(builtin: list[SeedTask]) -> None:
    assert len(builtin) >= 150
    assert len({t.id for t in builtin}) == len(builtin)
    assert all(re.fullmatch(r"seed_[a-z]+_\d{3}", t.id) for t in builtin)


def test_builtin_instructions_unique_after_normalizing(builtin: list[SeedTask]) -> None:
    counts = Counter(seed_key(t.instruction) for t in builtin)
    assert [text for text, n in counts.items() if n > 1] == []


def test_builtin_covers_every_task_type(builtin: list[SeedTask]) -> None:
    counts = Counter(t.task_type for t in builtin)
    assert set(counts) == set(TASK_TYPES)
    assert min(counts.values()) >= 5


def test_builtin_classification_tasks(builtin: list[SeedTask]) -> None:
    classification = [t for t in builtin if t.is_classification]
    assert len(classification) >= 25
    # a classification seed's outputs are labels, so they stay short
    assert all(len(i.output) <= 40 for t in classification for i in t.instances)


def test_builtin_instances_complete(builtin: list[SeedTask]) -> None:
    for task in builtin:
        assert 1 <= len(task.instances) <= 3, task.id
        assert all(i.output.strip() for i in task.instances), task.id
        assert task.domain, task.id


def test_builtin_many_domains(builtin: list[SeedTask]) -> None:
    assert len({t.domain for t in builtin}) >= 30


def test_builtin_tasks_short_enough_for_six_demonstrations(builtin: list[SeedTask]) -> None:
    # ~4 characters a token: six of the longest stay near 1500 tokens with the template around them
    longest = max(len(json.dumps(t.to_dict(), ensure_ascii=False)) for t in builtin)
    assert longest <= 1000


def test_builtin_duplicate_id_across_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "seeds").mkdir()
    line = '{{"id": "same", "instruction": "{}", "instances": [{{"output": "x"}}]}}\n'
    (tmp_path / "seeds" / "a.jsonl").write_text(line.format("Task one."), encoding="utf-8")
    (tmp_path / "seeds" / "b.jsonl").write_text(line.format("Task two."), encoding="utf-8")
    monkeypatch.setattr(seeds_module, "builtin_dir", lambda kind: tmp_path)
    with pytest.raises(ConfigError, match=r"b\.jsonl: duplicated id 'same', already used in .*a\.jsonl"):
        load_seeds("builtin")


# ---------------------------------------------------------------------------------------------- bad files

BAD_CASES = [
    ("not_utf8.jsonl", r"not_utf8\.jsonl: line 2: not valid UTF-8 \(byte 0xe9\)"),
    ("empty.jsonl", r"empty\.jsonl: the file is empty"),
    ("invalid_json.jsonl", r"invalid_json\.jsonl: line 2: invalid JSON \(.* at column \d+\)"),
    ("not_object.jsonl", r"line 1: expected a JSON object, got list"),
    ("missing_instances.jsonl", r"line 2: missing key 'instances'"),
    ("unknown_key.jsonl", r"line 1: unknown key\(s\) instuction"),
    ("duplicate_id.jsonl", r"line 3: duplicated id 'a', first used at .*duplicate_id\.jsonl: line 1"),
    ("duplicate_instruction.jsonl", r"line 2: duplicated instruction, first at .*line 1"),
    ("empty_instruction.jsonl", r"line 1: empty instruction"),
    ("bad_bool.jsonl", r"line 1: 'is_classification' must be true or false, got 'sometimes' \(str\)"),
    ("bad_instances.jsonl", r"line 1: 'instances' must be a non-empty list"),
    ("missing_output.jsonl", r"line 1: instance 2: missing key 'output'"),
    ("empty_output.jsonl", r"line 1: instance 1: empty output"),
    ("flat_output_int.jsonl", r"line 1: 'output' must be a string, got 3 \(int\)"),
    ("empty.csv", r"empty\.csv: the file is empty"),
    ("header_only.csv", r"header_only\.csv: the file has a header but no rows"),
    ("missing_column.csv", r"missing column 'output' for the output; columns are answer, input, instruction"),
    ("field_count.csv", r"field_count\.csv: line 3: 4 fields where the header has 3"),
    ("bad_bool.csv", r"line 2: 'is_classification' must be true or false, got 'maybe'"),
    ("duplicate_id.csv", r"line 3: duplicated id 't1', first used at .*line 2 for another instruction"),
    ("seeds.txt", r"unknown extension '\.txt'; expected \.jsonl, \.csv or \.parquet"),
]


@pytest.mark.parametrize(("name", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_seed_file(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_seeds(BAD / name)


@pytest.mark.parametrize(
    ("source", "column_map", "message"),
    [
        ("no/such/file.jsonl", None, r"seed source 'no/such/file\.jsonl' not found"),
        (GOOD / "custom.csv", {"prompt": "instruction"}, r"unknown field 'prompt'; valid fields are instruction"),
        (GOOD / "custom.csv", {"instruction": ""}, r"'instruction' must name a column, got ''"),
        (GOOD / "custom.csv", {"instruction": "question"}, r"missing column 'question' for the instruction"),
    ],
    ids=["not_found", "unknown_field", "empty_column_name", "mapped_column_missing"],
)
def test_bad_source_or_column_map(source: str | Path, column_map: dict[str, str] | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_seeds(source, column_map=column_map)


# ---------------------------------------------------------------------------------------------- user data

CUSTOM_MAP = {"instruction": "prompt", "input": "context", "output": "response", "is_classification": "label"}


def test_csv_with_column_map_groups_rows_by_instruction() -> None:
    tasks = load_seeds(GOOD / "custom.csv", column_map=CUSTOM_MAP)
    assert [t.id for t in tasks] == ["custom_0001", "custom_0002"]
    animal, title = tasks
    assert animal.instances == (Instance("Eagle", "Bird"), Instance("Bat", "Mammal"))
    assert animal.is_classification and not title.is_classification
    assert title.instances == (Instance("Rain, at last: the drought ends", "Drought Ends After Heavy Rain"),)


def test_flat_jsonl_groups_rows_and_defaults_input() -> None:
    tasks = load_seeds(GOOD / "flat.jsonl")
    assert [(t.instruction, len(t.instances)) for t in tasks] == [
        ("Name the capital of the country.", 2),
        ("Say hello in Spanish.", 1),
    ]
    assert tasks[1].instances == (Instance("", "Hola"),)


def test_relative_path_resolves_against_base_dir() -> None:
    tasks = load_seeds("flat.jsonl", base_dir=GOOD)
    assert len(tasks) == 2


HF_ROWS = [
    {
        "question": "Sort the word into noun or verb.",
        "context": "run",
        "answer": "Verb",
        "kind": "classification",
        "key": "w1",
    },
    {
        "question": "Sort the word into noun or verb.",
        "context": "table",
        "answer": "Noun",
        "kind": "classification",
        "key": "w1",
    },
    {"question": "Give a synonym for the word.", "context": "happy", "answer": "Glad", "kind": None, "key": "w2"},
]
HF_MAP = {"instruction": "question", "input": "context", "output": "answer", "task_type": "kind", "id": "key"}


def _check_hf_tasks(tasks: list[SeedTask]) -> None:
    assert [t.id for t in tasks] == ["w1", "w2"]
    assert tasks[0].instances == (Instance("run", "Verb"), Instance("table", "Noun"))
    assert tasks[0].task_type == "classification" and tasks[1].task_type is None


def test_hf_dataset_folder_from_save_to_disk(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(HF_ROWS).save_to_disk(str(tmp_path / "ds"))
    _check_hf_tasks(load_seeds(tmp_path / "ds", column_map=HF_MAP))


def test_hf_dataset_dict_folder_uses_train_split(tmp_path: Path) -> None:
    import datasets

    train = datasets.Dataset.from_list(HF_ROWS)
    other = datasets.Dataset.from_list(HF_ROWS[:1])
    datasets.DatasetDict({"test": other, "train": train}).save_to_disk(str(tmp_path / "dd"))
    _check_hf_tasks(load_seeds(tmp_path / "dd", column_map=HF_MAP))


def test_hf_parquet_folder_and_file(tmp_path: Path) -> None:
    import datasets

    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_list(HF_ROWS).to_parquet(str(tmp_path / "pq" / "train.parquet"))
    _check_hf_tasks(load_seeds(tmp_path / "pq", column_map=HF_MAP))
    _check_hf_tasks(load_seeds(tmp_path / "pq" / "train.parquet", column_map=HF_MAP))


def test_hf_dataset_without_train_split_is_rejected(tmp_path: Path) -> None:
    import datasets

    part = datasets.Dataset.from_list(HF_ROWS)
    datasets.DatasetDict({"a": part, "b": part}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ConfigError, match=r"has splits \['a', 'b'\] and none is 'train'"):
        load_seeds(tmp_path / "dd", column_map=HF_MAP)


def test_hf_missing_mapped_column_names_the_dataset(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(HF_ROWS).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ConfigError, match=r"dataset folder .*ds: missing column 'output' for the output"):
        load_seeds(tmp_path / "ds", column_map={"instruction": "question"})


def test_hf_repo_id_that_cannot_be_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants

    # offline mode is read at import time, so the environment variable alone comes too late
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"could not load the Hugging Face dataset 'nobody-here/no-such-seeds'"):
        load_seeds("nobody-here/no-such-seeds")


def test_to_dict_round_trips_through_a_jsonl_file(builtin: list[SeedTask], tmp_path: Path) -> None:
    path = tmp_path / "copy.jsonl"
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in builtin[:20]), encoding="utf-8")
    assert load_seeds(path) == builtin[:20]
