"""The bootstrap loop: rounds, stop conditions, deterministic requests, and (against the real
vLLM server) a small self-instruct run and an output-first classification instance."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from filters.base import Funnel
from filters.registry import build_chain
from generator.config import Config, parse_config
from generator.core.records import Record
from generator.core.text import dedup_key
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.server import ServerInfo
from generator.prompting.roles import load_templates
from generator.prompting.seeds import load_seeds
from generator.publish.writer import DatasetWriter
from generator.run.complete import Completion
from generator.run.context import Run, open_method
from generator.run.rounds import PoolResult, grow_pool
from generator.run.sender import Sender, Served
from generator.run.stop import StopSignals
from generator.run.store import RunStore


def _run(
    config: Config,
    url: str,
    key: str | None,
    model: str,
    method: str = "self_instruct",
    instructions: list[Record] | None = None,
) -> tuple[PoolResult | list[Record], Funnel, list[str]]:
    """One method's rounds in a fresh run dir; with `instructions`, a completion stage (`method`,
    a method of generator.run.complete.Completion) given those instructions."""
    config.generation.method = method if instructions is None else config.generation.method
    sent: list[str] = []

    async def go() -> Any:
        async with Engine([Endpoint(url, key)], model, config.engine) as engine:
            with RunStore(config.run_dir, {"test": 1}) as store:
                seeds, templates = load_seeds("builtin"), load_templates(config)
                run = Run(
                    config=config,
                    seeds=seeds,
                    templates=templates,
                    method=open_method(config, seeds, templates),
                    completion=Completion.for_config(config, templates),
                    instruction_filters=build_chain(config.filters.instructions),
                    record_filters=[],
                    store=store,
                    writer=DatasetWriter(config, config.run_dir / "dataset"),
                    stop=StopSignals(config.run_dir),
                )
                sender = Sender(engine, store, Served(model, config.sampling))
                if instructions is not None:
                    out = await getattr(run.completion, method)(sender, instructions, run.funnel)
                else:
                    out = await grow_pool(run, sender)
                sent.extend(r.request_id for r in store.results())
                return out, run.funnel.generation

    out, funnel = asyncio.run(go())
    return out, funnel, sent


def _bundled_template(role: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "prompts" / f"{role}.jinja").read_text(encoding="utf-8")
    assert "max_tokens: 512" in text
    return text


def _config(tmp_path: Path, **generation: Any) -> Config:
    config = parse_config(
        {
            "engine": {"concurrency": 8},
            "generation": {"num_instructions": 10, **generation},
            "filters": {"instructions": [{"name": "length"}, {"name": "exact_dedup"}]},
        }
    )
    config.run_dir = tmp_path / "run"
    return config


def test_stalled_acceptance_ends_the_loop_with_a_reason(tmp_path: Path, fake: FakeOpenAI) -> None:
    config = _config(tmp_path, stall_rounds=2, max_rounds=10)
    config.filters.instructions = [{"name": "length", "min_words": 500, "max_words": 1000}]  # drops all
    result, _, _ = _run(config, fake.url, None, "fake-model")
    assert len(result.records) == 0
    assert len(result.rounds) == 2
    assert "acceptance below 5% for 2 rounds" in result.stop_reason


def test_max_rounds_ends_the_loop(tmp_path: Path, fake: FakeOpenAI) -> None:
    config = _config(tmp_path, num_instructions=10_000, max_rounds=2, stall_rounds=5)
    result, _, _ = _run(config, fake.url, None, "fake-model")
    assert len(result.rounds) == 2
    assert result.stop_reason == "max_rounds (2) reached"
    assert len(result.records) == sum(r.accepted for r in result.rounds) > 0


def test_requests_are_the_same_in_every_run(tmp_path: Path, fake: FakeOpenAI) -> None:
    first = _run(_config(tmp_path / "a", max_rounds=3), fake.url, None, "fake-model")
    second = _run(_config(tmp_path / "b", max_rounds=3), fake.url, None, "fake-model")
    assert sorted(first[2]) == sorted(second[2])
    assert [r.instruction for r in first[0].records] == [r.instruction for r in second[0].records]


def test_target_reached_and_not_exceeded(tmp_path: Path, fake: FakeOpenAI) -> None:
    # The fake server echoes the prompt: its numbered rules are the only items that are not copies
    # of the seed demonstrations (dropped as copies_seed).
    result, funnel, _ = _run(_config(tmp_path, num_instructions=3), fake.url, None, "fake-model")
    assert result.stop_reason == "target reached"
    assert len(result.records) == 3
    assert funnel.drops["bootstrap"]["copies_seed"] > 0


@pytest.mark.parametrize("method", ["alpaca_batch", "evol_instruct", "custom"])
def test_every_method_runs_its_rounds(tmp_path: Path, fake: FakeOpenAI, method: str) -> None:
    result, _, sent = _run(_config(tmp_path, method=method, max_rounds=2), fake.url, None, "fake-model", method)
    assert result.rounds and sent
    assert all(r.meta.get("template") for r in result.records)
    # Lineage: each instruction names the seed tasks it came from (shown, or evolved from).
    seed_ids = {s.id for s in load_seeds("builtin")}
    assert all(r.meta["seed_ids"] and set(r.meta["seed_ids"]) <= seed_ids for r in result.records)


@pytest.mark.vllm
def test_small_self_instruct_run_grows_a_pool_of_new_instructions(tmp_path: Path, vllm_server: ServerInfo) -> None:
    # One request a round (`requests_per_round`; concurrency does not cap a round), 3 rounds: one
    # answer cannot fill a pool of 40 (the model writes more items than the 4 asked: 14 once).
    config = _config(
        tmp_path, num_instructions=40, instructions_per_prompt=4, overgenerate=1.0, max_rounds=3, requests_per_round=1
    )
    config.filters.instructions = parse_config({}).filters.instructions  # the default chain
    config.sampling.max_tokens = 128  # room for 4 short instructions (about 8 tokens/s here)
    result, _, _ = _run(config, vllm_server.base_url, vllm_server.api_key, vllm_server.model)
    assert result.rounds, result.stop_reason
    pool_sizes = []
    total = 0
    for r in result.rounds:
        total += r.accepted
        pool_sizes.append(total)
    assert pool_sizes[-1] == len(result.records) > 0
    assert len(result.rounds) >= 2 and pool_sizes[-1] > pool_sizes[0], "the pool did not grow across rounds"
    seeds = {dedup_key(s.instruction) for s in load_seeds("builtin")}
    assert not [r.instruction for r in result.records if dedup_key(r.instruction) in seeds]
    # Each row names the round that made it (round 0's one answer may leave nothing: the pool still grows).
    assert {r.meta["round"] for r in result.records} <= set(range(len(result.rounds)))
    assert all("seed_ids" in r.meta for r in result.records)


@pytest.mark.vllm
def test_classification_task_gets_an_output_first_instance(tmp_path: Path, vllm_server: ServerInfo) -> None:
    config = _config(tmp_path, instances_per_task=3)
    # The bundled template with shorter answers (its 512 tokens took a minute on the busy suite's
    # server): a template of one's own for the role, as a user sets it; the role's name stays.
    shorter = tmp_path / "instance_output_first.jinja"
    shorter.write_text(_bundled_template("instance_output_first").replace("max_tokens: 512", "max_tokens: 160"))
    config.generation.templates.instance_output_first = str(shorter)
    task = Record(
        "Classify the sentiment of the following product review as positive or negative.",
        meta={"task_type": "classification"},
    )
    records, funnel, _ = _run(
        config, vllm_server.base_url, vllm_server.api_key, vllm_server.model, method="instances", instructions=[task]
    )
    with RunStore(config.run_dir, {"test": 1}) as store:
        [result] = list(store.results())
    assert result.meta["template"] == "instance_output_first"
    assert result.texts[0].strip()
    dropped = sum(sum(r.values()) for r in funnel.drops.values())
    assert len(records) + dropped == 1  # a record, or a drop with its reason: never lost silently
    if records:
        assert records[0].output.strip() and records[0].meta["instance_template"] == "instance_output_first"


@pytest.mark.vllm
def test_classify_stage_flags_tasks(tmp_path: Path, vllm_server: ServerInfo) -> None:
    config = _config(tmp_path)
    tasks = [
        Record("Classify the sentiment of this review as positive or negative."),
        Record("Write a short poem about the sea."),
    ]
    flagged, _, _ = _run(
        config, vllm_server.base_url, vllm_server.api_key, vllm_server.model, method="classify", instructions=tasks
    )
    assert [r.meta["task_type"] in ("classification", "generation") for r in flagged] == [True, True]
