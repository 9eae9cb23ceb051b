"""The record target (`generation.num_records`), the budgets (`budget:`) and the fingerprint's
independence from engine and server settings, against the fake OpenAI-compatible server (it
answers deterministically, so runs can be compared request for request).

The record chain has a `length` filter that drops a share of the finished rows, so a target is
only met by going back for more instructions.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI
from fake_run import SHARE_DROPPED, fake_in_thread, fake_process, fake_settings

from generator.config import EngineConfig, ServerConfig, parse_config
from generator.core.errors import ConfigError
from generator.core.records import Record
from generator.run.funnel import RunFunnel
from generator.run.pipeline import generate
from generator.run.quota import Quotas

EXE = str(Path(sys.executable).parent / "instructforge")
TARGET = 20


FAKE_OPTIONS = {"variants": True}
# Seconds each answer takes on the time budgets' clock (`_served_clock`): about 2 s for a whole run.
SERVED_S = 0.05
RUN = {
    "engine": {"concurrency": 4, "stop_grace_s": 0.5},
    "generation": {"num_records": TARGET, "num_instructions": 8},
    "filters": SHARE_DROPPED,
    "dataset": {"save_to_disk": False},
}


def _run(run_dir: Path, url: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """`generate` in this process; what a user would look at afterwards."""
    generate(parse_config(fake_settings(run_dir, url, RUN, **sections)), progress=False)
    return _outcome(run_dir)


def _outcome(run_dir: Path) -> dict[str, Any]:
    ds = datasets.load_dataset(str(run_dir / "dataset"))
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return {
        "ids": sorted(ds["train"]["id"]),
        "rounds": json.loads((run_dir / "rounds.json").read_text()),
        "funnel": json.loads((run_dir / "funnel.json").read_text()),
        "requests": [line["request_id"] for line in lines],
        "tokens": sum(line["prompt_tokens"] + line["completion_tokens"] for line in lines),
        "card": (run_dir / "dataset" / "README.md").read_text(),
    }


def _adds_up(funnel: dict[str, Any]) -> bool:
    return funnel["candidates"] == funnel["kept"] + sum(sum(r.values()) for r in funnel["drops"].values())


@pytest.fixture(scope="module")
def reference(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run with no budget."""
    return _run(tmp_path_factory.mktemp("reference") / "run", fake.url)


@pytest.mark.parametrize("n", [3, TARGET, 45])
def test_target_gives_exactly_n_rows_though_filters_drop_a_share(tmp_path: Path, fake: FakeOpenAI, n: int) -> None:
    out = _run(tmp_path / "run", fake.url, generation={"num_records": n})
    assert len(out["ids"]) == n
    assert out["funnel"]["kept"] == n and _adds_up(out["funnel"])
    assert out["funnel"]["drops"]["length"]["too_short"] > 0, "the record filter dropped nothing"
    assert out["rounds"]["stop"] == "target"
    assert out["rounds"]["stop_reason"] == f"target reached: {n} records"
    assert f"target reached: {n} records" in out["card"]
    # The first refill (num_instructions: 8) cannot give 20 or 45 rows: the run went back for more.
    if n > 8:
        assert len(out["rounds"]["target"]["refills"]) >= 2


def test_without_a_target_the_pool_size_decides_as_before(tmp_path: Path, fake: FakeOpenAI) -> None:
    out = _run(tmp_path / "run", fake.url, generation={"num_records": None, "num_instructions": 8})
    assert out["rounds"]["stop_reason"] == "num_instructions reached: 8 instructions"
    assert len(out["rounds"]["target"]["refills"]) == 1
    assert 0 < len(out["ids"]) < 8  # the record filter dropped some, and nothing went back for more


def test_same_dataset_from_two_fresh_runs(tmp_path: Path, fake: FakeOpenAI, reference: dict[str, Any]) -> None:
    again = _run(tmp_path / "run", fake.url)
    assert again["ids"] == reference["ids"]
    assert sorted(again["requests"]) == sorted(reference["requests"])


# Each budget, set well below what the reference run spends; `spent` reads what the run stored.
BUDGETS = {
    "max_requests": {"max_requests": 40},
    "max_tokens": {"max_tokens": 6000},
    "max_time_s": {"max_time_s": 1.0},
    "max_gpu_hours": {"max_gpu_hours": 1.0, "gpus": 3600},  # 1 s at 3600 GPUs
    "max_cost": {"max_cost": 0.6, "price_per_million_tokens": 100.0},  # 6000 tokens
}
TIMED = {"max_time_s", "max_gpu_hours"}


def _served_clock(fake: FakeOpenAI) -> SimpleNamespace:
    """A `time` for the budget whose seconds are the fake's answers times `SERVED_S`: a time budget
    then stops after the same requests on a quiet machine and on a busy one (on the wall clock a
    busy CI machine spent the whole budget in round 0, before any answer), and the fake answers at
    once."""
    start = sum(fake.served.values())
    return SimpleNamespace(monotonic=lambda: (sum(fake.served.values()) - start) * SERVED_S)


@pytest.mark.parametrize("key", list(BUDGETS))
def test_budget_stops_at_its_limit_then_a_larger_one_continues_to_the_target(
    tmp_path: Path, fake: FakeOpenAI, reference: dict[str, Any], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    budget = BUDGETS[key]
    if key in TIMED:
        monkeypatch.setattr("generator.run.budget.time", _served_clock(fake))
    stopped = _run(run_dir, fake.url, budget=budget)
    rounds = stopped["rounds"]
    assert rounds["stop"] == "budget" and rounds["stopped_by_budget"] == key, rounds["stop_reason"]
    assert rounds["stop_reason"].startswith(f"budget {key} ")
    assert f"budget {key} " in stopped["card"]
    # A complete dataset of what the run had: loadable, and the funnel adds up to it.
    assert 0 < len(stopped["ids"]) < TARGET
    assert stopped["funnel"]["kept"] == len(stopped["ids"]) and _adds_up(stopped["funnel"])
    assert len(stopped["requests"]) < len(reference["requests"])
    spent = rounds["budget"]["spent"]
    assert spent["requests"] == len(stopped["requests"])
    if key == "max_requests":
        assert len(stopped["requests"]) == budget["max_requests"]
    elif key == "max_tokens":
        # Requests in flight when the limit is reached finish: at most `concurrency` of them.
        assert budget["max_tokens"] <= stopped["tokens"] < budget["max_tokens"] + 4 * 600
    elif key == "max_cost":
        assert spent["cost"] >= budget["max_cost"]
    elif key == "max_time_s":
        assert spent["seconds"] >= budget["max_time_s"]
    else:
        assert spent["gpu_hours"] >= budget["max_gpu_hours"]

    # The same budget again: what earlier sessions spent counts, so nothing more is sent.
    same = _run(run_dir, fake.url, budget=budget)
    assert same["requests"] == stopped["requests"]
    assert same["rounds"]["stopped_by_budget"] == key

    # A larger budget continues to the target: the dataset of a run that was never stopped.
    larger = {k: v * 1000 if k.startswith("max_") else v for k, v in budget.items()}
    done = _run(run_dir, fake.url, budget=larger)
    assert done["rounds"]["stop"] == "target"
    assert done["ids"] == reference["ids"]
    assert Counter(done["requests"]) == Counter(reference["requests"]), "a request was lost or sent twice"


@pytest.mark.subprocess
def test_budget_flag_on_the_command_line(tmp_path: Path, fake: FakeOpenAI) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(fake_settings(tmp_path / "run", fake.url, RUN)))
    done = subprocess.run(
        [EXE, "generate", "-c", str(cfg), "--records", "30", "--max-requests", "25"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "stopped: budget max_requests (25) reached: 25 requests" in done.stdout
    out = _outcome(tmp_path / "run")
    assert len(out["requests"]) == 25 and out["rounds"]["target"]["num_records"] == 30


# Every engine and server setting, changed (the test fails when a new one is not listed here).
CHANGED_ENGINE = {
    "concurrency": 7,
    "timeout_s": 300,
    "connect_timeout_s": 5,
    "max_retries": 1,
    "backoff_base_s": 0.5,
    "backoff_max_s": 30,
    "retry_budget": 0.5,
    "endpoint_down_after": 2,
    "probe_interval_s": 1,
    "no_endpoint_timeout_s": 60,
    "stop_grace_s": 3,
    "flush_every": 3,
    "flush_interval_s": 0.1,
}
CHANGED_SERVER = {
    "api_key_env": "INSTRUCTFORGE_TEST_OTHER_KEY",
    "device": "cpu",
    "port": 1234,
    "dtype": "bfloat16",
    "enforce_eager": False,
    "tensor_parallel_size": 2,
    "data_parallel_size": 2,
    "gpu_memory_utilization": 0.5,
    "cpu_kvcache_gib": 4,
    "cpu_threads": "0",
    "startup_timeout_s": 10,
    "extra_args": ["--seed", "1"],
}


def test_rerun_with_every_engine_and_server_setting_changed_sends_nothing(
    tmp_path: Path, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(CHANGED_ENGINE) == set(EngineConfig.model_fields)
    assert set(CHANGED_SERVER) | {"endpoints"} == set(ServerConfig.model_fields)
    run_dir = tmp_path / "run"
    # At concurrency 2 a round still sends more than 2 requests (round 1 needs 14).
    first = _run(run_dir, fake.url, engine={"concurrency": 2})
    assert max(r["requests"] for r in first["rounds"]["rounds"]) > 2
    monkeypatch.setenv("INSTRUCTFORGE_TEST_OTHER_KEY", "unused")
    with fake_in_thread(variants=True) as other:
        again = _run(run_dir, fake.url, engine=CHANGED_ENGINE, server={**CHANGED_SERVER, "endpoints": [other.url]})
    assert sum(other.served.values()) == 0, "the rerun sent requests"
    assert again["requests"] == first["requests"]
    assert again["ids"] == first["ids"]


def test_changed_target_and_budget_continue_the_same_run(tmp_path: Path, fake: FakeOpenAI) -> None:
    run_dir = tmp_path / "run"
    first = _run(run_dir, fake.url, generation={"num_records": 10})
    more = _run(run_dir, fake.url, generation={"num_records": 25}, budget={"max_requests": 100_000})
    assert len(first["ids"]) == 10 and len(more["ids"]) == 25
    assert more["requests"][: len(first["requests"])] == first["requests"]  # appended to, not started over
    assert len(set(more["requests"])) == len(more["requests"])
    fresh = _run(tmp_path / "fresh", fake.url, generation={"num_records": 25})
    assert len(more["requests"]) - len(first["requests"]) < len(fresh["requests"])  # reused what was there
    # The card shows the whole run, both sessions, not the last one alone.
    assert _card_row(first["card"], "requests") == f"{len(first['requests']):,}"
    assert _card_row(first["card"], "sessions") is None
    assert _card_row(more["card"], "sessions") == "2"
    assert _card_row(more["card"], "requests") == f"{len(more['requests']):,}"
    stored = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert _card_row(more["card"], "completion tokens") == f"{sum(r['completion_tokens'] for r in stored):,}"


def _card_row(card: str, label: str) -> str | None:
    """The value of the card's generation table row `label`, or None when it has none."""
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    return None


def test_wall_time_adds_up_over_sessions(tmp_path: Path, fake: FakeOpenAI) -> None:
    run_dir = tmp_path / "run"
    _run(run_dir, fake.url)
    first = json.loads((run_dir / "spent.json").read_text())["seconds"]
    _run(run_dir, fake.url)
    assert json.loads((run_dir / "spent.json").read_text())["seconds"] > first


@pytest.mark.parametrize(
    ("budget", "server", "match"),
    [
        ({"max_cost": 5}, {}, r"max_cost needs price_per_gpu_hour or price_per_million_tokens"),
        ({"max_gpu_hours": 1}, {"endpoints": ["http://127.0.0.1:9/v1"]}, r"set budget\.gpus"),
        ({"max_gpu_hours": 1}, {"device": "cpu"}, r"runs on CPU and holds no GPU"),
    ],
    ids=["cost-without-price", "gpu-hours-external", "gpu-hours-cpu"],
)
def test_a_budget_that_cannot_work_is_refused_before_anything_starts(
    tmp_path: Path, budget: dict[str, Any], server: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        generate(parse_config({"run_dir": str(tmp_path / "run"), "budget": budget, "server": server}), progress=False)
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_gpus_come_from_the_managed_servers_parallel_sizes() -> None:
    from generator.run.budget import server_gpus

    config = parse_config(
        {
            "server": {
                "device": "gpu",
                "tensor_parallel_size": 2,
                "data_parallel_size": 3,
                "extra_args": ["--pipeline-parallel-size", "2"],
            }
        }
    )
    assert server_gpus(config) == 12
    assert server_gpus(parse_config({"server": {"device": "cpu"}})) == 0
    assert server_gpus(parse_config({"server": {"endpoints": ["http://h/v1"]}})) is None
    assert server_gpus(parse_config({"server": {"endpoints": ["http://h/v1"]}, "budget": {"gpus": 4}})) == 4


# -- kill -9 during a target run -------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    with fake_process("--delay", "0.2", "--variants") as url:
        yield url


@pytest.mark.parametrize("after", [12, 60], ids=["first-refill", "second-refill"])
@pytest.mark.subprocess
def test_sigkill_during_a_target_run_then_resume_gives_the_same_dataset(
    tmp_path: Path, slow_url: str, fake: FakeOpenAI, reference: dict[str, Any], after: int
) -> None:
    """Killed while the slow server answers; resumed against the fast one (the same answers: server
    settings are not in the fingerprint), so the rest of the run takes no waiting."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(fake_settings(tmp_path / "run", slow_url, RUN)))
    results = tmp_path / "run" / "results.jsonl"
    proc = subprocess.Popen([EXE, "generate", "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_text().count("\n") >= after:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    cfg.write_text(json.dumps(fake_settings(tmp_path / "run", fake.url, RUN)))
    again = subprocess.run([EXE, "generate", "-c", str(cfg)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    ids: list[str] = []
    for shard in sorted((tmp_path / "run" / "dataset" / "data").glob("*.parquet")):
        ids += pq.read_table(shard, columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == reference["ids"]
    stored = [json.loads(line)["request_id"] for line in results.read_text().splitlines()]
    assert Counter(stored) == Counter(reference["requests"]), "a request was lost or sent twice"


QUOTA_RUN = {
    "method": "custom",
    "custom": {"topics": ["cooking", "travel"], "personas": ["a student"], "difficulties": ["easy"]},
}


def test_a_quota_caps_its_category_and_the_target_is_met_with_others(fake: FakeOpenAI, tmp_path: Path) -> None:
    free = _run(tmp_path / "free", fake.url, generation=QUOTA_RUN)
    capped = _run(tmp_path / "capped", fake.url, generation={**QUOTA_RUN, "quotas": {"topic": {"cooking": 0.25}}})
    free_topics = Counter(r["meta"]["topic"] for r in _kept(tmp_path / "free"))
    topics = Counter(r["meta"]["topic"] for r in _kept(tmp_path / "capped"))
    assert free_topics["cooking"] > TARGET // 4  # without the quota, cooking takes more than a quarter
    assert (
        len(capped["ids"]) == TARGET and topics["cooking"] == TARGET // 4 and topics["travel"] == TARGET - TARGET // 4
    )
    assert capped["funnel"]["drops"]["target"]["quota_full"] > 0
    assert capped["rounds"]["stop_reason"] == f"target reached: {TARGET} records"
    assert free["ids"] != capped["ids"]
    # A rerun replays the stored results in order: the same rows pass the quota, nothing is sent.
    again = _run(tmp_path / "capped", fake.url, generation={**QUOTA_RUN, "quotas": {"topic": {"cooking": 0.25}}})
    assert again["ids"] == capped["ids"] and again["requests"] == capped["requests"]


def test_quotas_need_a_record_target(tmp_path: Path) -> None:
    settings = fake_settings(
        tmp_path, "http://127.0.0.1:9/v1", RUN, generation={"num_records": None, "quotas": {"topic": {"a": 0.5}}}
    )
    with pytest.raises(ConfigError, match="quotas are shares of the record target"):
        parse_config(settings)


def _doc(name: str, kind: str = "factual") -> Record:
    return Record(instruction=f"{name} {kind}", meta={"task_kind": kind, "source": {"document": name, "chunk": 0}})


ROWS = [_doc("a.md"), _doc("a.md", "summary"), _doc("a.md"), _doc("b.md"), _doc("c.pdf"), _doc("c.pdf", "summary")]


@pytest.mark.parametrize(
    ("shares", "kept"),
    [
        pytest.param({"source.document": {"a.md": 0.2}}, ["a.md", "b.md", "c.pdf", "c.pdf"], id="dotted-path"),
        pytest.param({"source.document": {"*": 0.2}}, ["a.md", "b.md", "c.pdf"], id="every-document"),
        pytest.param(
            {"source.document": {"*": 0.2, "a.md": 0.4}}, ["a.md", "a.md", "b.md", "c.pdf"], id="named-over-every"
        ),
        pytest.param({"source.missing": {"*": 0.1}}, [r.meta["source"]["document"] for r in ROWS], id="missing-path"),
        pytest.param({"task_kind": {"summary": 0.1}}, ["a.md", "a.md", "b.md", "c.pdf"], id="top-level-key"),
    ],
)
def test_a_quota_key_is_a_dotted_path_into_meta(shares: dict[str, dict[str, float]], kept: list[str]) -> None:
    funnel = RunFunnel()
    funnel.records.kept = len(ROWS)
    admitted = Quotas(shares, records=5).admit(ROWS, funnel)
    assert [r.meta["source"]["document"] for r in admitted] == kept
    assert funnel.records.kept == len(kept)


def _kept(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "kept.jsonl").read_text().splitlines()]
