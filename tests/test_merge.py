"""`merge`: shard run directories -> one globally deduplicated dataset, and the shard config.

The unit tests build shard run directories with `write_dataset`; the rehearsal at the end
generates two real shards against the vLLM server (marked `vllm`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from filters.base import Funnel
from generator.cli import main
from generator.config import Config, DatasetConfig, PushConfig, load_config, parse_config
from generator.core.errors import ConfigError
from generator.core.records import Record
from generator.llm.server import ServerInfo
from generator.publish.dataset import DatasetInfo, write_dataset
from generator.run.merge import MERGE_STAGE, merge_runs

EXE = str(Path(sys.executable).parent / "instructforge")


def _shard(root: Path, name: str, instructions: list[str], drops: dict[str, dict[str, int]]) -> Path:
    """A finished shard run directory: dataset, funnel.json (kept + `drops`), fingerprint, stats."""
    run = root / name
    records = [
        Record(
            instruction=i,
            input="",
            output=f"answer to {i}",
            meta={"template": "self_instruct", "model": "m", "round": 1},
        )
        for i in instructions
    ]
    write_dataset(
        records, run / "dataset", DatasetInfo(name=name, model="m"), test_ratio=0.0, split_seed=0, save_to_disk=False
    )
    dropped = sum(sum(r.values()) for r in drops.values())
    funnel = Funnel.from_dict({"candidates": len(records) + dropped, "kept": len(records), "drops": drops})
    funnel.write(run / "funnel.json")
    (run / "fingerprint.json").write_text(
        json.dumps(
            {
                "model": {"name": "Qwen/Qwen2.5-7B-Instruct"},
                "sampling": {"temperature": 0.7, "seed": 3},
                "generation": {"method": "self_instruct", "seeds": "builtin"},
            }
        )
    )
    (run / "engine_stats.json").write_text(
        json.dumps({"sessions": [{"requests": 10, "prompt_tokens": 100, "completion_tokens": 50}]})
    )
    return run


SHARD_A = ["Write a haiku about rain.", "Sort the list in ascending order.", "Name three primary colors."]
SHARD_B = ["write a HAIKU about rain", "Translate the sentence into French.", "Name three primary colors!"]


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    return [
        _shard(tmp_path, "shard-0", SHARD_A, {"length": {"too_short": 2}}),
        _shard(tmp_path, "shard-1", SHARD_B, {"exact_dedup": {"exact_duplicate": 1}}),
    ]


def test_merge_drops_cross_shard_duplicates_and_funnel_adds_up(shards: list[Path], tmp_path: Path) -> None:
    result = merge_runs(shards, tmp_path / "merged", dedup=[{"name": "exact_dedup"}])
    ds = datasets.load_dataset(str(result.dataset_dir))
    # keep-first: every shard-0 row stays; shard 1 loses its two near-copies of shard-0 rows
    assert ds["train"]["instruction"] == [*SHARD_A, "Translate the sentence into French."]
    assert [(s.rows, s.dropped) for s in result.shards] == [(3, 0), (3, 2)]
    funnel = json.loads((tmp_path / "merged" / "funnel.json").read_text())
    assert funnel["drops"] == {
        "length": {"too_short": 2},
        "exact_dedup": {"exact_duplicate": 1},
        MERGE_STAGE: {"exact_duplicate": 2},
    }
    assert funnel["candidates"] == 6 + 2 + 1 == funnel["kept"] + funnel["dropped"]
    assert funnel["kept"] == 4 == result.records
    card = (result.dataset_dir / "README.md").read_text()
    assert "| model | `m` |" in card  # the model the rows name
    assert "| merge | `exact_duplicate` | 2 |" in card and "| shards | 2 |" in card
    sources = json.loads((tmp_path / "merged" / "merge.json").read_text())
    assert [s["dropped"] for s in sources["shards"]] == [0, 2]
    rejected = [json.loads(line) for line in (tmp_path / "merged" / "rejected.jsonl").read_text().splitlines()]
    assert sorted(r["record"]["instruction"] for r in rejected) == sorted([SHARD_B[0], SHARD_B[2]])


def test_merge_splits_by_config_and_cli_prints_summary(
    shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "merged"
    code = main(
        [
            "merge",
            *map(str, shards),
            "--out",
            str(out),
            "--dedup",
            "exact_dedup",
            "--set",
            "dataset.test_ratio=0.3",
            "--set",
            "dataset.name=merged-demo",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "merged 2 shards (6 rows) into 4 records" in printed and "2 cross-shard duplicates" in printed
    ds = datasets.load_dataset(str(out / "dataset"))
    assert set(ds) == {"train", "test"} and ds["train"].num_rows + ds["test"].num_rows == 4


def test_default_merge_drops_paraphrases_across_shards_with_faiss(tmp_path: Path) -> None:
    shards = [
        _shard(tmp_path, "shard-0", SHARD_A, {}),
        _shard(tmp_path, "shard-1", ["Write one haiku about the rain.", "Translate the sentence into French."], {}),
    ]
    result = merge_runs(shards, tmp_path / "merged")
    assert result.dedup == ["exact_dedup", "semantic_dedup"]
    assert [(s.rows, s.dropped) for s in result.shards] == [(3, 0), (2, 1)]
    funnel = json.loads((tmp_path / "merged" / "funnel.json").read_text())
    assert funnel["drops"] == {MERGE_STAGE: {"near_duplicate": 1}}
    assert funnel["candidates"] == 5 == funnel["kept"] + funnel["dropped"]
    report = json.loads((tmp_path / "merged" / "state" / "semantic_dedup" / "report.json").read_text())
    assert [(d["instruction"], d["kept_text"]) for d in report["dropped"]] == [
        ("Write one haiku about the rain.", "Write a haiku about rain.")
    ]


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("no_funnel", r"shard-0 is not a finished run directory: no funnel\.json"),
        ("out_is_input", r"merge output .*shard-0 is also an input"),
        ("unknown_filter", r"merge: key 'dedup\[0\]\.name': unknown name 'nope'; valid: .*exact_dedup"),
        ("push_without_repo", r"no dataset\.push\.repo"),
        ("rows_differ", r"holds 3 rows but its funnel\.json says 7 were kept"),
        ("none", r"at least one shard run directory"),
        ("same_shard_twice", r"the same shard more than once: .*shard-1; list each"),
    ],
    ids=["no_funnel", "out_is_input", "unknown_filter", "push_without_repo", "rows_differ", "none", "same_shard_twice"],
)
def test_merge_errors(shards: list[Path], tmp_path: Path, case: str, match: str) -> None:
    kwargs: dict = {"dedup": [{"name": "exact_dedup"}]}
    runs, out = list(shards), tmp_path / "merged"
    if case == "no_funnel":
        (shards[0] / "funnel.json").unlink()
    elif case == "out_is_input":
        out = shards[0]
    elif case == "unknown_filter":
        kwargs["dedup"] = [{"name": "nope"}]
    elif case == "push_without_repo":
        kwargs["push"] = True
    elif case == "rows_differ":
        funnel = json.loads((shards[0] / "funnel.json").read_text())
        (shards[0] / "funnel.json").write_text(json.dumps({**funnel, "kept": 7}))
    elif case == "none":
        runs = []
    elif case == "same_shard_twice":
        runs = [shards[0], shards[1], shards[1].parent / "." / shards[1].name]
    with pytest.raises(ConfigError, match=match):
        merge_runs(runs, out, **kwargs)


def test_merge_pushes_one_dataset(shards: list[Path], tmp_path: Path, hub) -> None:
    config = Config(dataset=DatasetConfig(push=PushConfig(repo="alice/merged")))
    result = merge_runs(shards, tmp_path / "merged", config=config, dedup=[{"name": "exact_dedup"}], push=True)
    ds = datasets.load_dataset("alice/merged")
    assert sorted(ds["train"]["id"]) == sorted(datasets.load_dataset(str(result.dataset_dir))["train"]["id"])


# --- the shard config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "count", "expected"),
    [
        (0, 1, list(range(7))),
        (0, 3, [0, 3, 6]),
        (2, 3, [2, 5]),
    ],
    ids=["one_shard", "first_of_three", "last_of_three"],
)
def test_shard_takes_every_count_th_seed(index: int, count: int, expected: list[int]) -> None:
    shard = parse_config({"generation": {"shard": {"index": index, "count": count}}}).generation.shard
    assert shard is not None
    assert shard.select(list(range(7))) == expected
    assert shard.sampling_seed(10) == 10 + index and shard.sampling_seed(None) is None


@pytest.mark.parametrize(
    ("shard", "match"),
    [
        ({"index": 3, "count": 3}, r"shard index 3 is not below count 3"),
        ({"index": -1, "count": 3}, r"generation\.shard\.index"),
        ({"index": 0}, r"missing key 'generation\.shard\.count'"),
    ],
    ids=["index_too_big", "negative", "no_count"],
)
def test_bad_shard_config(shard: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config({"generation": {"shard": shard}})


def test_shard_with_no_seed_left_is_refused() -> None:
    shard = parse_config({"generation": {"shard": {"index": 4, "count": 5}}}).generation.shard
    assert shard is not None
    with pytest.raises(ConfigError, match=r"shard 4 of 5 gets no seed tasks from 3; use at most 3 shards"):
        shard.select([1, 2, 3])


# --- CPU rehearsal: two real shards, merged -------------------------------------------------------


@pytest.mark.vllm
def test_two_shards_generate_merge_and_load(
    vllm_server: ServerInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator.run.pipeline import generate

    monkeypatch.setenv("INSTRUCTFORGE_TEST_KEY_FOR_RUN", vllm_server.api_key or "")
    settings = {
        "server.endpoints": [vllm_server.base_url],
        "server.api_key_env": "INSTRUCTFORGE_TEST_KEY_FOR_RUN",
        "model.served_name": vllm_server.model,
        "model.name": "bundled",
        "generation.num_instructions": 4,
        # One round of two requests of 4 (one request of 8 at 128 tokens could leave a shard empty).
        "generation.instructions_per_prompt": 4,
        "generation.requests_per_round": 2,
        "generation.max_rounds": 1,
        "generation.instances": "response",  # one answer request each, no classify stage
        "sampling.max_tokens": 128,
        "engine.concurrency": 16,
        "report.enabled": False,  # not about the report (tests/fake_run.py: NO_REPORT)
    }
    runs = [tmp_path / "shard-0", tmp_path / "shard-1"]
    # The shards run at once, as a user runs them: shard 1 with the command line, shard 0 here.
    other = subprocess.Popen(
        [EXE, "generate", "-c", "shards-small.yaml", "--run-dir", str(runs[1])]
        + [f"--set={k}={json.dumps(v)}" for k, v in {**settings, "generation.shard": {"index": 1, "count": 2}}.items()],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        config = load_config("shards-small.yaml", overrides={**settings, "generation.shard": {"index": 0, "count": 2}})
        config.run_dir = runs[0]
        assert generate(config, progress=False).records > 0
    except BaseException:
        other.kill()
        raise
    _, err = other.communicate(timeout=900)
    assert other.returncode == 0, err[-2000:]
    assert json.loads((runs[1] / "funnel.json").read_text())["kept"] > 0
    # the shards drew different seed tasks: their requests differ
    ids = [{json.loads(line)["request_id"] for line in (r / "results.jsonl").read_text().splitlines()} for r in runs]
    assert not ids[0] & ids[1]

    # A third shard that repeats the first one's records: every one of them is a cross-shard duplicate.
    shutil.copytree(runs[0], tmp_path / "shard-2")
    no_report = parse_config({"report": {"enabled": False}})
    merged = merge_runs(
        [*runs, tmp_path / "shard-2"], tmp_path / "merged", config=no_report, dedup=[{"name": "exact_dedup"}]
    )
    assert merged.shards[2].dropped == merged.shards[2].rows > 0
    assert merged.cross_shard_duplicates >= merged.shards[2].rows
    ds = datasets.load_dataset(str(merged.dataset_dir))
    rows = sum(ds[s].num_rows for s in ds)
    assert rows == merged.records == sum(s.rows - s.dropped for s in merged.shards)
    assert len(set(ds["train"]["id"])) == ds["train"].num_rows
    funnel = json.loads((tmp_path / "merged" / "funnel.json").read_text())
    shard_funnels = [json.loads((r / "funnel.json").read_text()) for r in runs]
    shard_funnels.append(shard_funnels[0])
    assert funnel["candidates"] == sum(f["candidates"] for f in shard_funnels)
    assert funnel["candidates"] == funnel["kept"] + funnel["dropped"]
    assert funnel["drops"].get(MERGE_STAGE, {}).get("exact_duplicate", 0) == merged.cross_shard_duplicates
