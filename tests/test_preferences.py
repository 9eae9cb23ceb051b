"""Preference pairs: k responses per instruction ranked by rule checks and the judge. Against the
fake server (it echoes the prompt; per-response stop strings cut the echo at different places and
a rubric of the test's own turns the echoed text into a known score), then a real run on the vLLM
server whose dataset TRL's DPOTrainer trains on."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from filters.base import Funnel
from generator.config import Config, PreferencesConfig, load_config, parse_config
from generator.core.errors import ConfigError
from generator.core.readers import read_records
from generator.core.records import PREFERENCE, Record
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.model import prepare_bundled_model
from generator.llm.server import ServerInfo
from generator.prompting.roles import load_templates
from generator.prompting.seeds import load_seeds
from generator.publish.dataset import DatasetInfo, write_dataset
from generator.publish.writer import DatasetWriter
from generator.run.complete import Completion
from generator.run.context import Run, open_method
from generator.run.funnel import RunFunnel
from generator.run.merge import merge_runs
from generator.run.pipeline import RunResult, generate
from generator.run.preferences import STAGE, Scored, pick
from generator.run.sender import Sender, Served
from generator.run.stop import StopSignals
from generator.run.store import RunStore

# The judge's answer is read from the response: the value after "=" in its last word, for every
# criterion. The fake server echoes the rendered rubric, and the judge reads the JSON in the echo.
RUBRIC = """{%- set last = output.split()[-1] -%}
{%- set s = last.split("=")[1] if "=" in last else "0" -%}
{"helpfulness": {{ s }}, "correctness": {{ s }}, "clarity": {{ s }}}"""

# Three responses: the echo cut before " B=", before " C=", and whole.
STOPS = [{"stop": [" B="]}, {"stop": [" C="]}, {}]


def _config(tmp_path: Path, **preferences: Any) -> Config:
    (tmp_path / "rubric.jinja").write_text(RUBRIC)
    prefs = {
        "responses": 3,
        "sampling": STOPS,
        "judge": {"template": str(tmp_path / "rubric.jinja"), "threshold": 2},
        **preferences,
    }
    config = parse_config(
        {"engine": {"concurrency": 8}, "generation": {"instances": "response", "preferences": prefs}},
        base_dir=tmp_path,
    )
    config.run_dir = tmp_path / "run"
    return config


def _pairs(config: Config, url: str, tasks: list[str]) -> tuple[list[Record], RunFunnel, list[str]]:
    """The completion stage over `tasks` in the config's run directory: the records, the funnel and
    the request ids sent this time."""

    async def go() -> tuple[list[Record], RunFunnel, list[str]]:
        async with Engine([Endpoint(url, None)], "fake-model", config.engine) as engine:
            with RunStore(config.run_dir, {"test": 1}) as store:
                before = {r.request_id for r in store.results()}
                seeds, templates = load_seeds("builtin"), load_templates(config)
                run = Run(
                    config=config,
                    seeds=seeds,
                    templates=templates,
                    method=open_method(config, seeds, templates),
                    completion=Completion.for_config(config, templates),
                    instruction_filters=[],
                    record_filters=[],
                    store=store,
                    writer=DatasetWriter(config, config.run_dir / "dataset"),
                    stop=StopSignals(config.run_dir),
                )
                sender = Sender(engine, store, Served("fake-model", config.sampling))
                run.setup_filters(sender.batch_chat(asyncio.get_running_loop()))
                out = await run.completion.complete(sender, [Record(t) for t in tasks], run.funnel)
                store.flush()
                sent = [r.request_id for r in store.results() if r.request_id not in before]
                return out, run.funnel, sent

    return asyncio.run(go())


TASKS = {
    "rate A=5 B=2 C=3": ("echo: rate A=5", "echo: rate A=5 B=2"),  # best first, worst second
    "rate A=2 B=4 C=x": ("echo: rate A=2 B=4", "echo: rate A=2 B=4 C=x"),  # the judge cannot read C
    "rate A=4 B=5 C=as an AI language model": (  # the whole echo fails the refusal check
        "echo: rate A=4 B=5",
        "echo: rate A=4 B=5 C=as an AI language model",
    ),
    "rate A=3 B=3 C=3": "tie",
    "rate A=1 B=1 C=1": "all_bad",  # every score under the threshold (2)
}


def test_known_scores_give_the_expected_pairs_and_drops(tmp_path: Path, fake: FakeOpenAI) -> None:
    out, funnel, sent = _pairs(_config(tmp_path), fake.url, list(TASKS))
    got = {r.instruction: (r.output, r.meta[PREFERENCE]["rejected"]) for r in out}
    assert got == {k: v for k, v in TASKS.items() if isinstance(v, tuple)}
    dropped = {reason: n for reason, n in funnel.generation.drops[STAGE].items()}
    assert dropped == {"tie": 1, "all_bad": 1}
    # Every response is its own request, and each distinct judged answer one more.
    assert len([i for i in sent if i]) == len(set(sent))
    row = next(r for r in out if r.instruction == "rate A=5 B=2 C=3")
    assert row.meta["chosen_response"] == 0 and row.meta["rejected_response"] == 1
    assert [(s["response"], s["score"], s["reason"]) for s in row.meta[PREFERENCE]["scores"]] == [
        (0, 5.0, None),
        (1, 2.0, None),
        (2, 3.0, None),
    ]
    refused = next(r for r in out if "language model" in r.instruction)
    assert refused.meta[PREFERENCE]["scores"][2]["reason"] == "ai_boilerplate"


def test_personal_data_in_any_response_is_redacted(tmp_path: Path, fake: FakeOpenAI) -> None:
    # The whole echo carries an email: redacted, its judge answer unreadable, so it is `rejected`.
    out, _, _ = _pairs(_config(tmp_path), fake.url, ["rate A=5 B=2 C=mail bob.smith@acme.org"])
    assert [(r.output, r.meta[PREFERENCE]["rejected"]) for r in out] == [
        ("echo: rate A=5", "echo: rate A=5 B=2 C=mail <EMAIL>")
    ]


def test_a_pair_must_differ_by_the_margin(tmp_path: Path, fake: FakeOpenAI) -> None:
    out, funnel, _ = _pairs(_config(tmp_path, min_margin=2), fake.url, ["rate A=5 B=2 C=3", "rate A=4 B=3 C=3"])
    assert [(r.output, r.meta[PREFERENCE]["rejected"]) for r in out] == [("echo: rate A=5", "echo: rate A=5 B=2")]
    assert dict(funnel.generation.drops[STAGE]) == {"tie": 1}


def test_rejected_can_be_required_to_fail_a_check(tmp_path: Path, fake: FakeOpenAI) -> None:
    tasks = ["rate A=5 B=2 C=3", "rate A=4 B=5 C=as an AI language model"]
    out, funnel, _ = _pairs(_config(tmp_path, rejected="failed_check"), fake.url, tasks)
    assert [(r.output, r.meta["rejected_response"]) for r in out] == [("echo: rate A=4 B=5", 2)]
    assert dict(funnel.generation.drops[STAGE]) == {"no_failed_check": 1}


def test_a_rerun_sends_nothing_new_and_picks_the_same(tmp_path: Path, fake: FakeOpenAI) -> None:
    config = _config(tmp_path)
    first, _, sent = _pairs(config, fake.url, list(TASKS))
    served = sum(fake.served.values())
    again, _, sent_again = _pairs(config, fake.url, list(TASKS))
    assert sent and sent_again == []
    assert sum(fake.served.values()) == served
    assert [(r.output, r.meta) for r in again] == [(r.output, r.meta) for r in first]


def test_responses_sampled_alike_are_still_distinct_requests(tmp_path: Path, fake: FakeOpenAI) -> None:
    # Without per-response sampling the echoes are identical: three requests, one judgement, a tie.
    out, funnel, sent = _pairs(_config(tmp_path, sampling=[]), fake.url, ["rate A=5"])
    assert out == []
    assert dict(funnel.generation.drops[STAGE]) == {"tie": 1}
    assert len(sent) == len(set(sent)) == 3 + 1


def _scored(*items: tuple[float | None, str | None]) -> list[Scored]:
    return [Scored(i, f"answer {i}", "stop", score, reason) for i, (score, reason) in enumerate(items)]


@pytest.mark.parametrize(
    ("items", "rejected", "expected"),
    [
        (((4.0, None), (2.0, None)), "worst", (0, 1)),
        (((2.0, None), (4.0, None)), "worst", (1, 0)),
        (((4.0, None), (None, "refusal"), (1.0, "low_judge_score")), "worst", (0, 1)),
        (((4.0, None), (1.0, "low_judge_score")), "failed_check", "no_failed_check"),
        (((4.0, None), (4.0, None)), "worst", "tie"),
        (((None, "truncated"), (1.0, "low_judge_score")), "worst", "all_bad"),
        (((4.0, None),), "worst", "too_few_responses"),
        (((None, None), (None, "refusal")), "worst", (0, 1)),  # rule checks alone (no judge)
        (((None, None), (None, None)), "worst", "tie"),
    ],
    ids=[
        "best-worst",
        "order-free",
        "check-failure-is-worst",
        "judge-failure-is-no-check-failure",
        "tie",
        "all-bad",
        "one-response",
        "rules-only",
        "rules-only-tie",
    ],
)
def test_pick(items: tuple[tuple[float | None, str | None], ...], rejected: str, expected: Any) -> None:
    cfg = PreferencesConfig(responses=2, rejected=rejected)
    got = pick(_scored(*items), cfg)
    assert (got if isinstance(got, str) else (got[0].index, got[1].index)) == expected


@pytest.mark.parametrize(
    ("prefs", "match"),
    [
        ({"responses": 1}, r"generation\.preferences\.responses"),
        ({"responses": 3, "sampling": [{"temperature": 0.1}]}, "sampling has 1 entries for 3 responses"),
        ({"checks": [{"name": "semantic_dedup"}]}, "'semantic_dedup' cannot check one response"),
        ({"judge": {"threshold": 9}}, r"generation\.preferences\.judge\.threshold"),
        ({"rejected": "random"}, r"generation\.preferences\.rejected"),
    ],
    ids=["k-below-2", "sampling-count", "stateful-check", "judge-threshold", "rejected-rule"],
)
def test_bad_settings_are_refused_when_the_config_loads(prefs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config({"generation": {"preferences": prefs}})


def test_pairs_are_written_as_trl_preference_columns_and_read_back(tmp_path: Path, fake: FakeOpenAI) -> None:
    import datasets

    config = _config(tmp_path)
    out, _, _ = _pairs(config, fake.url, list(TASKS))
    info = DatasetInfo(name="p", model="fake", preferences=config.generation.preferences.model_dump(mode="json"))
    folder = write_dataset(out, tmp_path / "dataset", info, test_ratio=0.0, split_seed=0)
    train = datasets.load_dataset(str(folder))["train"]
    assert {"prompt", "chosen", "rejected", "scores"} <= set(train.column_names)
    by_instruction = {row["instruction"]: row for row in train}
    for r in out:
        row = by_instruction[r.instruction]
        assert row["prompt"] == [{"role": "user", "content": r.instruction}]
        assert row["chosen"] == [{"role": "assistant", "content": r.output}]
        assert row["rejected"] == [{"role": "assistant", "content": r.meta[PREFERENCE]["rejected"]}]
        assert row["messages"] == row["prompt"] + row["chosen"]
        assert len(row["scores"]) == 3
    card = (folder / "README.md").read_text()
    assert "## Preference pairs" in card and "DPOTrainer" in card
    assert "response 0: `stop: [' B=']`" in card
    back = read_records([folder], format="own")
    assert sorted((r.instruction, r.meta[PREFERENCE]["rejected"]) for r in back) == sorted(
        (r.instruction, r.meta[PREFERENCE]["rejected"]) for r in out
    )


# --- the real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(vllm_server: ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, RunResult]:
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("INSTRUCTFORGE_TEST_KEY_FOR_PREFS", vllm_server.api_key or "")
        config = load_config(
            "preferences.yaml",
            overrides={
                "server.endpoints": [vllm_server.base_url],
                "server.api_key_env": "INSTRUCTFORGE_TEST_KEY_FOR_PREFS",
                "generation.num_instructions": 4,
                # Short answers: each stage waits for its longest (about 8 tokens/s a sequence here).
                "generation.preferences.sampling": [{"temperature": t, "max_tokens": 160} for t in (0.2, 0.8, 1.4)],
                "report.enabled": False,  # not about the report (tests/fake_run.py: NO_REPORT)
            },
        )
        config.run_dir = tmp_path_factory.mktemp("prefs") / "run"
        return config, generate(config, progress=False)
    finally:
        mp.undo()


@pytest.mark.vllm
def test_real_run_gives_ranked_pairs_and_resumes(
    real_run: tuple[Config, RunResult], vllm_server: ServerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    config, result = real_run
    train = datasets.load_dataset(str(result.dataset_dir))["train"]
    assert train.num_rows == result.records > 0
    for row in train:
        extra = json.loads(row["meta"]["extra"])
        by_index = {s["response"]: s for s in row["scores"]}
        chosen, rejected = by_index[extra["chosen_response"]], by_index[extra["rejected_response"]]
        assert chosen["reason"] is None  # passed every check and the judge
        assert rejected["reason"] is not None or rejected["score"] <= chosen["score"] - 0.5
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
    funnel = json.loads((result.run_dir / "funnel.json").read_text())
    assert funnel["candidates"] == funnel["kept"] + sum(sum(r.values()) for r in funnel["drops"].values())
    lines = (result.run_dir / "results.jsonl").read_text().count("\n")
    monkeypatch.setenv("INSTRUCTFORGE_TEST_KEY_FOR_PREFS", vllm_server.api_key or "")
    again = generate(config, progress=False)
    assert (result.run_dir / "results.jsonl").read_text().count("\n") == lines
    assert sorted(datasets.load_dataset(str(again.dataset_dir))["train"]["id"]) == sorted(train["id"])


@pytest.mark.vllm
def test_dpo_trainer_takes_the_dataset_as_is(real_run: tuple[Config, RunResult], tmp_path: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    _, result = real_run
    train = datasets.load_dataset(str(result.dataset_dir))["train"]
    path = str(prepare_bundled_model())
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=2,
        per_device_train_batch_size=1,
        max_length=512,  # TRL leaves out a pair longer than this: at 64 none of a small run's pairs was left
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=args,
        train_dataset=train,
        processing_class=AutoTokenizer.from_pretrained(path),
    )
    out = trainer.train()
    assert out.global_step == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def _pair_shard(root: Path, name: str, instructions: list[str]) -> Path:
    """A finished shard run directory whose dataset holds preference pairs."""
    prefs = PreferencesConfig(responses=2).model_dump(mode="json")
    records = [
        Record(
            i,
            "",
            f"good answer to {i}",
            {
                "chosen_response": 1,
                "rejected_response": 0,
                PREFERENCE: {
                    "rejected": f"bad answer to {i}",
                    "scores": [{"response": 0, "score": None, "reason": "refusal"}, {"response": 1, "score": 4.0}],
                },
            },
        )
        for i in instructions
    ]
    run = root / name
    info = DatasetInfo(name=name, model="m", preferences=prefs)
    write_dataset(records, run / "dataset", info, test_ratio=0, split_seed=0)
    Funnel.from_dict({"candidates": len(records), "kept": len(records), "drops": {}}).write(run / "funnel.json")
    (run / "fingerprint.json").write_text(json.dumps({"generation": {"method": "custom", "preferences": prefs}}))
    return run


def test_merged_shards_keep_their_pairs(tmp_path: Path) -> None:
    import datasets

    runs = [
        _pair_shard(tmp_path, "a", ["Write a haiku about rain.", "Name three colours."]),
        _pair_shard(tmp_path, "b", ["write a HAIKU about rain", "Translate the sentence into French."]),
    ]
    result = merge_runs(runs, tmp_path / "merged", dedup=[{"name": "exact_dedup"}])
    train = datasets.load_dataset(str(result.dataset_dir))["train"]
    assert train.num_rows == 3  # the haiku twice is one task
    for row in train:
        assert row["chosen"] == [{"role": "assistant", "content": f"good answer to {row['instruction']}"}]
        assert row["rejected"] == [{"role": "assistant", "content": f"bad answer to {row['instruction']}"}]
        scores = [(s["response"], s["score"], s["reason"]) for s in row["scores"]]
        assert scores == [(0, None, "refusal"), (1, 4.0, None)]
    assert "## Preference pairs" in (result.dataset_dir / "README.md").read_text()
