"""`generate` with a `push:` section: the token is checked before any work, checkpoints are
pushed while the run goes on, and the pushed dataset loads with `load_dataset` like the local one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest
from fake_openai import FakeOpenAI
from fake_run import NO_REPORT
from hub_server import TOKEN

from generator.config import parse_config
from generator.core.errors import HubError
from generator.run.pipeline import generate


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(delay_s=0.01, variants=True)
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


def _config(tmp_path: Path, url: str, **push):
    return parse_config(
        {
            "run_dir": str(tmp_path / "run"),
            "model": {"name": "fake", "served_name": "fake-model"},
            "server": {"endpoints": [url]},
            "engine": {"concurrency": 8},
            "generation": {"num_instructions": 12, "instances": "response"},
            # The fake server echoes prompts: keep the chains to what such text passes.
            "filters": {
                "instructions": [{"name": "length"}, {"name": "exact_dedup"}],
                "records": [{"name": "truncated"}],
            },
            "dataset": {"test_ratio": 0.25, "push": {"repo": "alice/forged", **push}},
            **NO_REPORT,
        }
    )


def test_generate_pushes_checkpoints_and_the_final_dataset(hub, fake, tmp_path: Path) -> None:
    result = generate(_config(tmp_path, fake.url, checkpoint_every=5), progress=False)
    repo = hub.state.repos[("dataset", "alice/forged")]
    summaries = [repo.commits[sha].summary for sha in repo.history]
    remote = datasets.load_dataset("alice/forged", cache_dir=str(tmp_path / "cache"))
    local = datasets.load_dataset(str(result.dataset_dir))
    assert set(remote) == set(local)
    for split in local:
        assert sorted(remote[split]["id"]) == sorted(local[split]["id"])
    assert sum(len(local[s]) for s in local) == result.records == 12
    # the repo's initial commit, checkpoints after 5 and 10 kept records, then the final push
    assert [s for s in summaries if s.startswith("Checkpoint")] == [
        "Checkpoint: 5 records so far",
        "Checkpoint: 10 records so far",
    ]
    assert len(summaries) == 4
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert TOKEN not in f.read_text(errors="ignore"), f


def test_missing_token_stops_before_any_request(hub, fake, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="token"):
        generate(_config(tmp_path, fake.url), progress=False)
    assert sum(fake.served.values()) == 0
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_the_card_of_a_decontaminated_run_counts_what_each_reference_caught(tmp_path: Path, fake: FakeOpenAI) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"instruction": "Name the largest moon of Saturn.", "input": "", "output": "Titan"}\n')
    config = _config(tmp_path, fake.url)
    config.dataset.push = None
    config.filters.records = [{"name": "truncated"}, {"name": "decontaminate", "references": [str(bench)]}]
    result = generate(config, progress=False)
    card = (result.dataset_dir / "README.md").read_text(encoding="utf-8")
    assert "## Decontamination" in card
    section = card[card.index("## Decontamination") :]
    assert "bench.jsonl" in section.split("\n## ")[0]
