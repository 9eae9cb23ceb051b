"""End to end: `generate` against the real vLLM server, the dataset loaded back, and resume. The run is
the session's one real run of `configs/default.yaml` (`default_run`, tests/conftest.py)."""

from __future__ import annotations

import json

import datasets
import pytest
from real_run import default_config

from generator.run.pipeline import generate

pytestmark = pytest.mark.vllm


def test_default_config_writes_a_loadable_dataset(default_run) -> None:
    config, result = default_run
    ds = datasets.load_dataset(str(result.dataset_dir))
    train = ds["train"]
    assert {"id", "instruction", "input", "output", "messages", "meta"} <= set(train.column_names)
    assert train.num_rows == result.records > 0
    # The default config asks for a record target, and the run meets it exactly.
    assert config.generation.num_records is not None
    assert result.records == config.generation.num_records
    assert json.loads((result.run_dir / "rounds.json").read_text())["stop"] == "target"
    assert result.summary().count(f"stopped: target reached: {result.records} records") == 1
    row = train[0]
    assert row["messages"][0]["role"] == "user" and row["messages"][1]["content"] == row["output"]
    assert row["instruction"] in row["messages"][0]["content"]
    assert len(set(train["id"])) == train.num_rows


def test_funnel_adds_up(default_run) -> None:
    config, result = default_run
    funnel = json.loads((result.run_dir / "funnel.json").read_text())
    dropped = sum(sum(reasons.values()) for reasons in funnel["drops"].values())
    assert funnel["candidates"] == funnel["kept"] + dropped
    assert funnel["kept"] == result.records


def test_rerun_resumes_without_new_requests(default_run, vllm_server, monkeypatch) -> None:
    config, first = default_run
    results_file = first.run_dir / "results.jsonl"
    lines_before = results_file.read_text().count("\n")
    config2 = default_config(vllm_server, monkeypatch, first.run_dir)
    again = generate(config2, progress=False)
    assert results_file.read_text().count("\n") == lines_before
    ids = lambda r: sorted(datasets.load_dataset(str(r.dataset_dir))["train"]["id"])  # noqa: E731
    assert ids(again) == ids(first)


def test_changed_config_is_refused(default_run, vllm_server, monkeypatch) -> None:
    from generator.core.errors import ConfigError

    config, first = default_run
    changed = default_config(vllm_server, monkeypatch, first.run_dir, num_instructions=7)
    with pytest.raises(ConfigError, match=r"generation\.num_instructions"):
        generate(changed, progress=False)
