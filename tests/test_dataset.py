"""The dataset folder: schema, splits, card, exports, and what `datasets` and a tokenizer make of it."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml

from generator.core.errors import ConfigError, InstructforgeError
from generator.core.records import Record
from generator.publish.dataset import (
    DatasetInfo,
    export,
    features,
    funnel_rows,
    read_rows,
    record_to_row,
    row_to_record,
    size_category,
    split_records,
    write_dataset,
)

FUNNEL = {
    "candidates": 40,
    "kept": 12,
    "dropped": 28,
    "drops": {"length": {"too_short": 15, "too_long": 3}, "exact_dedup": {"duplicate": 10}},
    "examples": {},
}


@pytest.fixture
def records(tests_dir: Path) -> list[Record]:
    lines = (tests_dir / "data" / "dataset_records.jsonl").read_text(encoding="utf-8").splitlines()
    return [Record.from_row(json.loads(line)) for line in lines]


@pytest.fixture
def info() -> DatasetInfo:
    return DatasetInfo(
        name="tiny-demo",
        pretty_name="Tiny demo",
        model="SmolLM2-135M-Instruct",
        model_revision="v1",
        templates=["self_instruct.jinja", "response.jinja"],
        sampling={"temperature": 0.7, "top_p": 0.95},
        funnel=FUNNEL,
        engine={"requests": 80, "completion_tokens": 5000},
        created_at="2026-11-23",
        version="0.1.0",
    )


def _card_yaml(folder: Path) -> dict:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_load_dataset_and_load_from_disk_give_the_written_rows(records, info, tmp_path):
    out = write_dataset(records, tmp_path / "ds", info, test_ratio=0.25, split_seed=1)
    by_folder = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    from_disk = datasets.load_from_disk(str(out / "hf"))
    expected = split_records(records, 0.25, 1)

    assert set(by_folder) == set(from_disk) == {"train", "test"}
    for split, recs in expected.items():
        assert by_folder[split].features == features()
        assert by_folder[split].to_list() == from_disk[split].to_list()
        assert [row_to_record(r) for r in by_folder[split]] == recs  # meta survives parquet
        assert by_folder[split]["messages"] == [r.messages for r in recs]


def test_meta_keeps_unknown_keys_and_types_scores():
    rec = Record(
        "Say hi.",
        "",
        "hi",
        {
            "task_type": "generation",
            "round": 2,
            "seed_ids": ["s1"],
            "scores": {"judge": 4.0, "length": 0.5},
            "order": "input_first",
        },
    )
    row = record_to_row(rec)
    assert row["meta"]["scores"] == [{"name": "judge", "value": 4.0}, {"name": "length", "value": 0.5}]
    assert json.loads(row["meta"]["extra"]) == {"order": "input_first"}
    assert row_to_record(row) == rec


@pytest.mark.parametrize(
    ("ratio", "seed", "n", "expect_test"),
    [
        (0.0, 0, 12, None),
        (0.5, 0, 1, None),  # one record: train only, load_dataset refuses empty splits
        (0.25, 0, 12, (1, 11)),
        (0.5, 3, 2, (1, 1)),  # tiny: both splits exist
        (0.01, 0, 2, (1, 1)),  # a ratio too small for the hash still yields a test row
        (0.99, 0, 3, (1, 2)),  # and one too large still leaves a train row
    ],
    ids=["no-test", "single-record", "quarter", "two-records", "tiny-ratio", "huge-ratio"],
)
def test_split_sizes(records, ratio, seed, n, expect_test):
    splits = split_records(records[:n], ratio, seed)
    if expect_test is None:
        assert list(splits) == ["train"]
        return
    low, high = expect_test
    assert low <= len(splits["test"]) <= high
    assert len(splits["train"]) + len(splits["test"]) == n


def test_split_is_deterministic_and_stable_when_the_dataset_grows(records):
    first = split_records(records[:8], 0.3, 7)
    assert split_records(records[:8], 0.3, 7) == first
    grown = split_records(records, 0.3, 7)
    assert {r.id for r in first["test"]} <= {r.id for r in grown["test"]}
    other_seed = split_records(records, 0.3, 8)
    assert [r.id for r in other_seed["test"]] != [r.id for r in grown["test"]]


def test_split_rejects_a_bad_ratio(records):
    with pytest.raises(ConfigError, match=r"test_ratio must be in \[0, 1\), got 1.5"):
        split_records(records, 1.5, 0)


def test_no_records_is_an_error(info, tmp_path):
    with pytest.raises(InstructforgeError, match="no records to write: every candidate was dropped"):
        write_dataset([], tmp_path / "ds", info, test_ratio=0.0, split_seed=0)
    assert not (tmp_path / "ds").exists()


def test_rewrite_removes_shards_of_the_previous_write(records, info, tmp_path):
    out = tmp_path / "ds"
    write_dataset(records, out, info, test_ratio=0.25, split_seed=0)
    assert sorted(p.name.split("-")[0] for p in (out / "data").iterdir()) == ["test", "train"]
    write_dataset(records[:5], out, info, test_ratio=0.0, split_seed=0)
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    assert [s["split"] for s in _card_yaml(out)["configs"][0]["data_files"]] == ["train"]
    assert len(read_rows(out)) == 5
    assert not list(tmp_path.glob(".ds.*"))  # no temporary folders left behind


_KILLED_WRITE = """
import json, os, signal, sys
from pathlib import Path
from generator.core.records import Record
from generator.publish import dataset

def die(*args, **kwargs):  # the card is rendered inside the staging block: be killed there
    os.kill(os.getpid(), signal.SIGKILL)

dataset.render_card = die
lines = Path(sys.argv[1]).read_text(encoding="utf-8").splitlines()
info = dataset.DatasetInfo(name="x", pretty_name="x", model="m", model_revision=None, templates=[],
                           sampling={}, funnel={"candidates": 0, "kept": 0, "dropped": 0, "drops": {}}, engine={},
                           created_at="2026-01-01", version="0")
dataset.write_dataset([Record.from_row(json.loads(x)) for x in lines], Path(sys.argv[2]), info,
                      test_ratio=0.0, split_seed=0)
"""


@pytest.mark.subprocess
def test_a_write_killed_midway_is_cleaned_by_the_next_one(records, info, tmp_path, tests_dir):
    import os
    import subprocess
    import sys

    from generator.core.files import temp_name

    out = tmp_path / "ds"
    write_dataset(records[:3], out, info, test_ratio=0.0, split_seed=0)
    (out / "data" / "train-00000-of-00001.parquet").rename(out / "data" / "old.parquet")  # a marker
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITE, str(tests_dir / "data" / "dataset_records.jsonl"), str(out)],
        cwd=tests_dir.parent,
        env={**os.environ, "PYTHONPATH": str(tests_dir.parent)},
        stderr=subprocess.PIPE,
    )
    _, err = child.communicate(timeout=120)
    assert child.returncode == -9, err.decode()
    staged = tmp_path / temp_name("ds", pid=child.pid)
    assert (staged / "data").is_dir() and (out / "data" / "old.parquet").is_file()  # the old dataset stands
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / temp_name("ds", pid=sleeper.pid)  # a writer still at work
        live.mkdir()
        write_dataset(records, out, info, test_ratio=0.0, split_seed=0)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds", live.name])
        assert len(read_rows(out)) == len(records)
    finally:
        sleeper.kill()
        sleeper.wait()


def _engine_stats(errors: dict[str, int], url: str) -> dict:
    """An engine's `to_dict()` as the run passes it to the card."""
    endpoint = {"url": url, "requests": 68, "ok": 66, "failed": 2, "retried": 5, "prompt_tokens": 13356,
                "completion_tokens": 8548, "taken_out": 0, "errors": errors}  # fmt: skip
    return {
        "requests": 68, "ok": 66, "failed": 2, "retried": 5, "prompt_tokens": 13356, "completion_tokens": 8548,
        "errors": errors, "elapsed_s": 73.234, "completion_tokens_per_s": 116.72, "endpoints": {url: endpoint},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("errors", "by_kind"),
    [
        pytest.param({}, "none", id="no-failures"),
        pytest.param({"timeout": 2, "http_5xx": 5, "http_429": 0}, "http_5xx 5, timeout 2", id="by-kind"),
    ],
)
def test_card_engine_table_is_readable_and_names_no_endpoint(records, info, tmp_path, errors, by_kind):
    url = "http://127.0.0.1:33649/v1"
    info.engine = _engine_stats(errors, url)
    card = (write_dataset(records, tmp_path / "ds", info, test_ratio=0.0, split_seed=0) / "README.md").read_text()
    table = card.split("## How it was generated")[1].split("Sampling parameters")[0]
    assert [line for line in table.splitlines() if line.startswith("| ") and "`" not in line][1:] == [
        "| seed tasks | builtin |",
        "| requests | 68 |",
        "| failed requests | 2 |",
        "| retried attempts | 5 |",
        f"| failed attempts by kind | {by_kind} |",
        "| prompt tokens | 13,356 |",
        "| completion tokens | 8,548 |",
        "| completion tokens per second | 116.7 |",
        "| elapsed | 1 min 13 s |",
        "| endpoints | 1 |",
    ]
    assert "127.0.0.1" not in card and "33649" not in card and "{}" not in card and "{'" not in card


def test_a_card_template_sees_no_endpoint_url(records, info, tmp_path):
    info.engine = _engine_stats({}, "http://127.0.0.1:33649/v1")
    template = tmp_path / "card.md.jinja"
    template.write_text("---\n{{ metadata }}---\n{{ info.engine }}\n", encoding="utf-8")
    out = write_dataset(records, tmp_path / "ds", info, test_ratio=0.0, split_seed=0, card_template=template)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "'requests': 68" in card and "127.0.0.1" not in card


def test_card_metadata_and_sections(records, info, tmp_path):
    out = write_dataset(records, tmp_path / "ds", info, test_ratio=0.25, split_seed=0)
    meta = _card_yaml(out)
    assert meta["license"] == "apache-2.0"
    assert meta["language"] == ["en"]
    assert meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"]
    assert "synthetic" in meta["tags"]
    assert meta["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"},
        {"split": "test", "path": "data/test-*"},
    ]
    assert sum(s["num_examples"] for s in meta["dataset_info"]["splits"]) == len(records)

    card = (out / "README.md").read_text(encoding="utf-8")
    for needle in [
        "# Tiny demo",
        "`SmolLM2-135M-Instruct` @ `v1`",
        "`self_instruct.jinja`",
        "| length | `too_short` | 15 | 37.5% |",
        "| exact_dedup | `duplicate` | 10 | 25.0% |",
        "**40** candidates went in, **12** were kept",
        "## Limitations",
        '"temperature": 0.7',
        "| completion tokens | 5,000 |",
        "## Examples",
        "| instruction |",
    ]:
        assert needle in card, needle
    # the huggingface_hub card parser reads the same metadata
    from huggingface_hub import DatasetCard

    assert DatasetCard.load(out / "README.md").data.pretty_name == "Tiny demo"


def test_card_example_with_backticks_keeps_its_fence(info, tmp_path):
    rec = Record("Show a code block.", "", "Here:\n```\nprint(1)\n```\nDone.")
    out = write_dataset([rec], tmp_path / "ds", info, test_ratio=0.0, split_seed=0)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "````text\nHere:\n```\nprint(1)\n```\nDone.\n````" in card


def test_custom_card_template(records, info, tmp_path):
    template = tmp_path / "card.jinja"
    template.write_text("---\n{{ metadata }}---\n# {{ info.name }}: {{ stats.total }} rows\n")
    out = write_dataset(records, tmp_path / "ds", info, test_ratio=0.0, split_seed=0, card_template=template)
    assert (out / "README.md").read_text().endswith("# tiny-demo: 12 rows\n")


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("{% for %}", "not a valid Jinja template"),
        ("{{ nothing_here }}", "failed to render: UndefinedError: 'nothing_here' is undefined"),
        ("{{ info.__class__.__mro__ }}", "failed to render: SecurityError"),
    ],
    ids=["syntax", "undefined", "sandboxed"],
)
def test_bad_card_template_fails_before_writing(records, info, tmp_path, source, match):
    template = tmp_path / "card.jinja"
    template.write_text(source)
    with pytest.raises(ConfigError, match=match):
        write_dataset(records, tmp_path / "ds", info, test_ratio=0.0, split_seed=0, card_template=template)
    assert not (tmp_path / "ds").exists()


def test_missing_card_template(records, info, tmp_path):
    with pytest.raises(ConfigError, match="dataset card template not found: .*nope.jinja"):
        write_dataset(
            records, tmp_path / "ds", info, test_ratio=0.0, split_seed=0, card_template=tmp_path / "nope.jinja"
        )


@pytest.mark.parametrize(
    ("n", "category"),
    [
        (0, "n<1K"),
        (999, "n<1K"),
        (1_000, "1K<n<10K"),
        (54_321, "10K<n<100K"),
        (2_000_000, "1M<n<10M"),
    ],
    ids=["empty", "999", "1k", "54k", "2M"],
)
def test_size_category(n, category):
    assert size_category(n) == category


def test_funnel_rows_sorted_by_count_within_filter():
    assert funnel_rows(FUNNEL) == [
        {"filter": "length", "reason": "too_short", "dropped": 15, "share": "37.5%"},
        {"filter": "length", "reason": "too_long", "dropped": 3, "share": "7.5%"},
        {"filter": "exact_dedup", "reason": "duplicate", "dropped": 10, "share": "25.0%"},
    ]


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("alpaca", lambda items, r: items[0] == {"instruction": r.instruction, "input": r.input, "output": r.output}),
        (
            "sharegpt",
            lambda items, r: (
                items[0]["conversations"]
                == [{"from": "human", "value": r.messages[0]["content"]}, {"from": "gpt", "value": r.output}]
            ),
        ),
        ("chat", lambda items, r: items[0] == {"messages": r.messages}),
    ],
    ids=["alpaca", "sharegpt", "chat"],
)
def test_export_formats(records, info, tmp_path, fmt, check):
    out = write_dataset(records, tmp_path / "ds", info, test_ratio=0.25, split_seed=0)
    target = tmp_path / "export" / f"train.{fmt}"
    count = export(out, fmt, target)
    text = target.read_text(encoding="utf-8")
    items = [json.loads(line) for line in text.splitlines()] if fmt == "chat" else json.loads(text)
    train = split_records(records, 0.25, 0)["train"]
    assert count == len(items) == len(train)
    assert check(items, train[0])


@pytest.mark.parametrize(
    ("fmt", "split", "match"),
    [
        ("csv", "train", "unknown export format 'csv'; expected one of alpaca, sharegpt, chat"),
        ("chat", "validation", "split 'validation' not in .*; it has test, train"),
    ],
    ids=["format", "split"],
)
def test_export_errors(records, info, tmp_path, fmt, split, match):
    out = write_dataset(records, tmp_path / "ds", info, test_ratio=0.25, split_seed=0)
    with pytest.raises(ConfigError, match=match):
        export(out, fmt, tmp_path / "x", split=split)


def test_export_all_splits_and_run_dir(records, info, tmp_path):
    write_dataset(records, tmp_path / "run" / "dataset", info, test_ratio=0.25, split_seed=0)
    assert export(tmp_path / "run", "chat", tmp_path / "all.jsonl", split=None) == len(records)


def test_export_without_dataset(tmp_path):
    with pytest.raises(ConfigError, match=r"holds no dataset: expected README.md and data/\*.parquet"):
        export(tmp_path, "chat", tmp_path / "x.jsonl")


def _bundled_tokenizer():
    from transformers import AutoTokenizer

    from generator.llm.model import _fingerprint, _is_complete, bundled_gguf, bundled_model_dir

    gguf = bundled_gguf()
    prepared = bundled_model_dir()
    if _is_complete(prepared, _fingerprint(gguf)):  # fast path when `model prepare` already ran
        return AutoTokenizer.from_pretrained(str(prepared))
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.mark.slow
def test_every_row_fits_the_bundled_models_chat_template(records, info, tmp_path):
    out = write_dataset(records, tmp_path / "ds", info, test_ratio=0.25, split_seed=0)
    tokenizer = _bundled_tokenizer()
    rows = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    n = 0
    for split in rows.values():
        for row in split:
            text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
            ids = tokenizer.apply_chat_template(row["messages"], tokenize=True)
            assert row["messages"][0]["content"] in text and row["output"] in text
            assert text.rstrip().endswith("<|im_end|>")
            assert len(ids) > 0
            n += 1
    assert n == len(records)


def _many(n: int) -> list[Record]:
    return [
        Record(
            f"Task number {i}: " + "describe " * (i % 17),
            "some input " * (i % 4),
            f"answer {i} " * (1 + i % 23),
            {"task_type": "generation", "round": i % 9, "seed_ids": [f"s{i % 5}"], "scores": {"q": i / 7}},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("row_group", "same_bytes"),
    [("20KB", True), ("100MB", False)],
    ids=["datasets-row-groups-smaller", "row-groups-capped"],
)
def test_shards_hold_the_rows_datasets_writes_and_the_disk_copy_loads(
    info, tmp_path, monkeypatch, row_group, same_bytes
):
    """The shards are written a row group at a time from the staged files (small batches, shards
    and row groups here, so that row groups and shards cut through batches). While `datasets`'
    row groups are at most `ROW_GROUP_ROWS` rows the shards are, byte for byte, what
    `Dataset.shard(n, i, contiguous=True).to_parquet` makes of the same rows; past that, row groups
    are capped at `ROW_GROUP_ROWS` rows and the rows are the same."""
    import datasets.config
    import pyarrow.parquet as pq

    from generator.publish import dataset as dataset_mod

    monkeypatch.setattr(dataset_mod, "STAGE_ROWS", 25)  # row groups span staged batches
    monkeypatch.setattr(dataset_mod, "ROW_GROUP_ROWS", 170)
    monkeypatch.setattr(dataset_mod, "SHARD_BYTES", 200_000)
    monkeypatch.setattr(datasets.config, "MAX_ROW_GROUP_SIZE", row_group)
    records = _many(2_500)
    out = write_dataset(iter(records), tmp_path / "ds", info, test_ratio=0.2, split_seed=3)
    from_disk = datasets.load_from_disk(str(out / "hf"))
    expected = split_records(records, 0.2, 3)
    for split, recs in expected.items():
        ds = from_disk[split]
        assert ds.features == features() and [row_to_record(r) for r in ds] == recs
        shards = sorted((out / "data").glob(f"{split}-*.parquet"))
        assert len(shards) > 1
        rows = []
        for i, shard in enumerate(shards):
            again = tmp_path / f"again-{split}-{i}.parquet"
            ds.shard(num_shards=len(shards), index=i, contiguous=True).to_parquet(str(again))
            assert (shard.read_bytes() == again.read_bytes()) is same_bytes
            meta = pq.ParquetFile(shard).metadata
            assert meta.num_row_groups > 1
            assert max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) <= 170
            rows += pq.read_table(shard).to_pylist()
        assert [row_to_record(r) for r in rows] == recs


def test_card_lengths_are_those_of_the_sorted_values():
    import math
    import random

    from generator.publish.dataset import _Lengths

    rng = random.Random(0)
    for n in (1, 2, 3, 10, 11, 1_000):
        values = [rng.randrange(0, 60) for _ in range(n)]
        lengths = _Lengths()
        for v in values:
            lengths.add(v)
        s = sorted(values)
        median = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
        assert lengths.summary() == {
            "min": s[0],
            "median": int(median),
            "mean": round(sum(s) / n, 1),
            "p90": s[min(n - 1, math.ceil(0.9 * n) - 1)],
            "max": s[-1],
        }
