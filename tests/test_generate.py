"""End to end: `generate` against the real vLLM server, the dataset loaded back, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from generator.config import load_config
from generator.llm.server import ServerInfo
from generator.run.pipeline import generate

pytestmark = pytest.mark.vllm


def _config(tmp_path: Path, server: ServerInfo, monkeypatch: pytest.MonkeyPatch, **generation):
    monkeypatch.setenv("INSTRUCTFORGE_TEST_KEY_FOR_RUN", server.api_key or "")
    overrides = {
        "server.endpoints": [server.base_url],
        "server.api_key_env": "INSTRUCTFORGE_TEST_KEY_FOR_RUN",
        **{f"generation.{k}": v for k, v in generation.items()},
    }
    config = load_config("default.yaml", overrides=overrides)
    config.run_dir = tmp_path / "run"
    return config


@pytest.fixture(scope="module")
def default_run(vllm_server: ServerInfo, tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    try:
        config = _config(tmp_path_factory.mktemp("default"), vllm_server, mp)
        result = generate(config, progress=False)
    finally:
        mp.undo()
    return config, result


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
    config2 = _config(first.run_dir.parent, vllm_server, monkeypatch)
    config2.run_dir = first.run_dir
    again = generate(config2, progress=False)
    assert results_file.read_text().count("\n") == lines_before
    ids = lambda r: sorted(datasets.load_dataset(str(r.dataset_dir))["train"]["id"])  # noqa: E731
    assert ids(again) == ids(first)


def test_changed_config_is_refused(default_run, vllm_server, monkeypatch) -> None:
    from generator.core.errors import ConfigError

    config, first = default_run
    changed = _config(first.run_dir.parent, vllm_server, monkeypatch, num_instructions=7)
    changed.run_dir = first.run_dir
    with pytest.raises(ConfigError, match=r"generation\.num_instructions"):
        generate(changed, progress=False)
