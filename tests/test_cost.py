"""What a run cost per stage (engine_stats.json's `cost`, the card) and the estimate of what a
record target will cost (`generate --estimate`), against the fake OpenAI-compatible server: its
answers are deterministic, so the share of rows the filters keep is fixed and known in advance."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from fake_run import SHARE_DROPPED, fake_settings

from generator.config import parse_config
from generator.core.errors import ConfigError
from generator.run.pipeline import estimate, generate

FAKE_OPTIONS = {"variants": True}
RUN = {
    "engine": {"concurrency": 4},
    "generation": {"num_instructions": 8},
    "filters": SHARE_DROPPED,
    "dataset": {"save_to_disk": False},
    "report": {"enabled": False},
}


def _config(run_dir: Path, url: str, records: int | None, **generation: Any) -> Any:
    return parse_config(fake_settings(run_dir, url, RUN, generation={"num_records": records, **generation}))


def _stored(run_dir: Path) -> tuple[Counter[str], Counter[str]]:
    """Requests and tokens per stage, counted from results.jsonl itself."""
    requests: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        data = json.loads(line)
        stage = data["meta"].get("stage", "other")
        requests[stage] += 1
        tokens[stage] += data["prompt_tokens"] + data["completion_tokens"]
    return requests, tokens


def _cost(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "engine_stats.json").read_text())["cost"]


def test_cost_per_stage_counts_every_stored_request_once_across_sessions(fake: FakeOpenAI, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    generate(_config(run_dir, fake.url, 10), progress=False)
    first = _cost(run_dir)
    # A larger target continues the same run in a second session; a rerun of it sends nothing.
    generate(_config(run_dir, fake.url, 25), progress=False)
    second = _cost(run_dir)
    generate(_config(run_dir, fake.url, 25), progress=False)
    third = _cost(run_dir)

    requests, tokens = _stored(run_dir)
    stages = second["stages"]
    assert {name: s["requests"] for name, s in stages.items()} == dict(requests)
    assert {name: s["prompt_tokens"] + s["completion_tokens"] for name, s in stages.items()} == dict(tokens)
    assert second["total"]["requests"] == sum(requests.values()) > first["total"]["requests"]
    assert second["kept_rows"] == 25
    assert second["total"]["tokens_per_kept_row"] == pytest.approx(sum(tokens.values()) / 25, abs=0.05)
    # Seconds carry over from the earlier sessions (spent.json), and a session that sends nothing adds none.
    assert second["total"]["seconds"] >= first["total"]["seconds"] > 0
    assert third["total"]["requests"] == second["total"]["requests"]
    assert third["total"]["seconds"] == pytest.approx(second["total"]["seconds"], abs=0.05)
    assert set(stages) >= {"instructions", "classify", "instances"}

    card = (run_dir / "dataset" / "README.md").read_text()
    assert "| stage | requests | failed | tokens | seconds | tokens per kept row | seconds per kept row |" in card
    assert f"| **total** | {sum(requests.values()):,} |" in card


def test_the_estimate_is_within_20_percent_of_the_run_it_predicts(fake: FakeOpenAI, tmp_path: Path) -> None:
    target = 60
    run_dir = tmp_path / "run"
    pilot, guess = estimate(_config(run_dir, fake.url, target, num_instructions=16), progress=False)
    assert guess is not None and pilot.records < target  # a pilot, not the whole run
    assert guess.spent.requests == sum(_stored(run_dir)[0].values())

    done = generate(_config(run_dir, fake.url, target, num_instructions=16), progress=False)
    assert done.records == target
    actual = _cost(run_dir)["total"]
    for what, predicted, real in [
        ("requests", guess.total.requests, actual["requests"]),
        ("tokens", guess.total.tokens, actual["prompt_tokens"] + actual["completion_tokens"]),
    ]:
        error = abs(predicted - real) / real
        assert error <= 0.20, f"estimated {what} {predicted} against {real}: {error:.0%} off"


def test_an_estimate_needs_a_record_target(fake: FakeOpenAI, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--estimate needs a record target"):
        estimate(_config(tmp_path / "run", fake.url, None), progress=False)
    assert not (tmp_path / "run").exists()


def test_the_estimate_prices_tokens_and_gpu_time() -> None:
    from generator.config import BudgetConfig
    from generator.run.cost import Costs, Pricing
    from generator.run.cost import estimate as price

    costs = Costs()
    for _ in range(10):
        costs.add_result("instructions", True, 100, 50)  # 1,500 tokens for 5 kept rows
    costs.add_seconds("instructions", 36.0)
    guess = price(costs, 5, 20, Pricing(BudgetConfig(price_per_gpu_hour=2.0, price_per_million_tokens=1.0), gpus=4))
    assert guess is not None
    # 20 rows cost 4 x what 5 did: 40 requests, 6,000 tokens, 144 s on 4 GPUs.
    assert (guess.total.requests, guess.total.tokens, guess.total.seconds) == (40, 6000, pytest.approx(144.0))
    assert guess.cost == pytest.approx(6000 / 1e6 * 1.0 + 144 / 3600 * 4 * 2.0)
    assert price(costs, 0, 20, Pricing(BudgetConfig(), gpus=None)) is None
