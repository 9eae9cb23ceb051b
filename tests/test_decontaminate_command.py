"""`instructforge decontaminate` and the `decontaminate` filter in configs: a benchmark in nested,
flat and chat formats planted among ordinary records, short references, the report and the card,
references resolved against the config file, and the round trip generate -> dedup ->
decontaminate -> export -> dedup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fake_run import ECHO_CHAINS, fake_settings

from filters.decontam import Decontaminate
from filters.embed import normalize_rows
from generator.cli import main
from generator.config import load_config, parse_config
from generator.core.records import Record, record_id
from generator.run.context import open_run
from generator.run.pipeline import generate

DATA = Path(__file__).parent / "data"
BENCH = DATA / "decontam"
REFS = {
    "nested": BENCH / "benchmark_nested.jsonl",
    "flat": BENCH / "benchmark_flat.json",
    "chat": BENCH / "benchmark_chat.jsonl",
}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _ordinary() -> list[dict]:
    rows = [
        {k: r.get(k, "") for k in ("instruction", "input", "output")} for r in _jsonl(DATA / "dataset_records.jsonl")
    ]
    for g in _jsonl(DATA / "paraphrase_groups.jsonl"):
        rows += [{"instruction": t, "input": "", "output": ""} for t in [g["instruction"], *g["paraphrases"]]]
    return rows


def _dataset_rows(folder: Path) -> list[dict]:
    return [row for f in sorted((folder / "data").glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    """Every verbatim benchmark item planted among ordinary records, decontaminated by the command."""
    tmp = tmp_path_factory.mktemp("planted")
    verbatim = [p for p in _jsonl(BENCH / "planted.jsonl") if p["kind"] == "verbatim"]
    ordinary = _ordinary()
    rows: list[dict] = []
    for i, r in enumerate(ordinary):
        rows.append(r)
        if i % 5 == 0 and i // 5 < len(verbatim):
            p = verbatim[i // 5]
            rows.append({k: p[k] for k in ("instruction", "input", "output")})
    assert len(rows) == len(ordinary) + len(verbatim)
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp / "out"
    argv = ["decontaminate", str(data), "--against", *map(str, REFS.values()), "--out", str(out), "--ngram-only"]
    assert main(argv) == 0
    return out, verbatim, ordinary


def test_every_verbatim_item_is_caught_and_named(planted) -> None:
    out, verbatim, ordinary = planted
    report = json.loads((out / "decontamination.json").read_text(encoding="utf-8"))
    matches = {m["id"]: m for b in report["benchmarks"].values() for m in b["matches"]}
    for p in verbatim:
        m = matches[record_id(p["instruction"], p["input"])]
        assert m["benchmark"] == str(REFS[p["benchmark"]]) and m["reason"] == "ngram_overlap"
        assert m["reference"].startswith(p["instruction"]) and m["score"] == 1.0
    assert len(matches) == len(verbatim)  # no ordinary record dropped
    for name, path in REFS.items():
        caught = sum(p["benchmark"] == name for p in verbatim)
        assert report["benchmarks"][str(path)]["ngram_overlap"] == caught
    kept = _dataset_rows(out / "dataset")
    assert len(kept) == len(ordinary)
    assert {r["id"] for r in kept} == {record_id(r["instruction"], r["input"]) for r in ordinary}


def test_the_card_counts_each_benchmark(planted) -> None:
    out, verbatim, _ = planted
    card = (out / "dataset" / "README.md").read_text(encoding="utf-8")
    assert "## Decontamination" in card
    nested = sum(p["benchmark"] == "nested" for p in verbatim)
    assert f"| `{REFS['nested']}` | 8 | {nested} | 0 |" in card
    assert len((out / "rejected.jsonl").read_text(encoding="utf-8").split("\n")) == len(verbatim) + 1


@pytest.mark.parametrize(
    ("reference", "record", "caught"),
    [
        ("Name the capital of Peru.", Record("name the CAPITAL of peru!"), True),
        ("Name the capital of Peru.", Record("Name the capital of Peru. Then name its largest river."), False),
        (
            "Which planet in our solar system has the longest day?",
            Record("Answer this quiz question.", "Which planet in our solar system has the longest day? Explain."),
            True,
        ),
        ("Which planet has rings?", Record("Which planet has rings?", "A list of planets."), False),
    ],
    ids=["short-whole", "short-inside-longer", "nine-words-inside-input", "same-instruction-other-input"],
)
def test_short_references(reference: str, record: Record, caught: bool) -> None:
    flt = Decontaminate(texts=[reference], threshold=None)
    assert flt.judge([record])[0].keep is not caught


class HashBag:
    """Bag of words hashed into 64 buckets: cosine is word overlap."""

    name = "hashbag"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, hash(w.strip(".,?!")) % 64] += 1
        return normalize_rows(out + 1e-4)


def test_a_long_input_neither_hides_nor_fakes_a_match(tmp_path: Path) -> None:
    passage = " ".join(f"word{i}" for i in range(200))
    other = " ".join(f"other{i}" for i in range(200))
    bench = tmp_path / "bench.jsonl"
    task = {"instruction": "Summarize the article in two sentences.", "instances": [{"input": passage, "output": ""}]}
    bench.write_text(json.dumps(task) + "\n", encoding="utf-8")
    flt = Decontaminate(references=[str(bench)], ngram=300, threshold=0.9, embedder=HashBag())
    reworded = Record("Give a summary of the article in two sentences.", passage + " extra")
    different = Record("Summarize the article in two sentences.", other)
    verdicts = flt.judge([reworded, different])
    assert verdicts[0].reason == "semantic_overlap"
    assert verdicts[1].keep


# --- configs --------------------------------------------------------------------------------------


def _write_config(folder: Path, references: list[str], run_dir: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "run_dir": str(run_dir),
        "model": {"name": "fake", "served_name": "fake-model"},
        "server": {"endpoints": ["http://127.0.0.1:9/v1"]},
        "generation": {"num_instructions": 4},
        "filters": {
            "instructions": [{"name": "length"}],
            "records": [{"name": "truncated"}, {"name": "decontaminate", "references": references, "threshold": None}],
        },
    }
    path = folder / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_a_bad_reference_stops_before_anything(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    config = _write_config(tmp_path / "cfg", [str(REFS["flat"]), "missing.jsonl"], run_dir)
    assert main(["generate", "-c", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("instructforge: error: filters.records[1].references[1]: reference 'missing.jsonl' not found")
    assert str(tmp_path / "cfg" / "missing.jsonl") in err
    assert not run_dir.exists()


def test_references_are_relative_to_the_config_file(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "bench.json").write_text(REFS["flat"].read_text(encoding="utf-8"), encoding="utf-8")
    config = _write_config(folder, ["bench.json"], tmp_path / "run")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    run = open_run(load_config(config))
    [flt] = [f for f in run.record_filters if isinstance(f, Decontaminate)]
    assert len(flt.refs) == 8


# --- round trip -------------------------------------------------------------------------------------


FAKE_OPTIONS = {"delay_s": 0.01, "variants": True}


def test_round_trip_loses_no_row_or_field(fake, tmp_path: Path) -> None:
    config = parse_config(
        fake_settings(
            tmp_path / "run",
            fake.url,
            engine={"concurrency": 8},
            generation={"num_instructions": 10, "instances": "response"},
            filters=ECHO_CHAINS,
            dataset={"test_ratio": 0.2},
        )
    )
    generated = _dataset_rows(generate(config, progress=False).dataset_dir)
    assert len(generated) == 10
    by_id = {r["id"]: r for r in generated}

    assert main(["dedup", str(tmp_path / "run"), "--out", str(tmp_path / "dedup"), "--exact-only"]) == 0
    deduped = _dataset_rows(tmp_path / "dedup" / "dataset")
    assert sorted(deduped, key=lambda r: r["id"]) == sorted(generated, key=lambda r: r["id"])

    refs = [str(p) for p in REFS.values()]
    argv = [
        "decontaminate",
        str(tmp_path / "dedup"),
        "--against",
        *refs,
        "--out",
        str(tmp_path / "clean"),
        "--ngram-only",
    ]
    assert main(argv) == 0
    clean = _dataset_rows(tmp_path / "clean" / "dataset")
    assert [by_id[r["id"]] for r in clean] == clean and len(clean) == 10

    # Both steps keep the input's splits (train and test) rather than putting every row in train.
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "clean" / "dataset" / "data").glob("*.parquet")) == [
        "test",
        "train",
    ]
    alpaca = str(tmp_path / "alpaca.json")
    assert main(["export", str(tmp_path / "clean"), "-f", "alpaca", "--split", "all", "-o", alpaca]) == 0
    exported = json.loads((tmp_path / "alpaca.json").read_text(encoding="utf-8"))
    assert sorted((r["instruction"], r["input"], r["output"]) for r in exported) == sorted(
        (r["instruction"], r["input"], r["output"]) for r in clean
    )
    assert main(["dedup", alpaca, "--out", str(tmp_path / "again"), "--exact-only"]) == 0
    again = _dataset_rows(tmp_path / "again" / "dataset")
    assert sorted((r["id"], r["instruction"], r["input"], r["output"]) for r in again) == sorted(
        (r["id"], r["instruction"], r["input"], r["output"]) for r in clean
    )


def test_question_files_catch_planted_turns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """MT-Bench and Arena-Hard question files (`turns`) as references: a copy of any turn, the
    second ones included, planted among ordinary rows is dropped; the ordinary rows are kept."""
    mt_bench = tmp_path / "question.jsonl"
    mt_bench.write_text(
        json.dumps(
            {
                "question_id": 81,
                "category": "writing",
                "turns": [
                    "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultures.",
                    "Rewrite your previous response. Start every sentence with the letter A.",
                ],
            }
        )
        + "\n",
        encoding="utf-8",
    )
    arena = tmp_path / "arena.jsonl"
    arena.write_text(
        json.dumps(
            {
                "question_id": "0122ab",
                "category": "arena-hard-v0.1",
                "cluster": "Music",
                "turns": [{"content": "Use ABC notation to write a melody in the style of a folk tune."}],
            },
            separators=(",", ":"),
        )
        + "\n",
        encoding="utf-8",
    )
    planted = [
        *json.loads(mt_bench.read_text(encoding="utf-8"))["turns"][::-1],
        json.loads(arena.read_text())["turns"][0]["content"],
    ]
    rows = [*_ordinary()[:30], *({"instruction": t, "input": "", "output": "ok"} for t in planted)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    assert (
        main(["decontaminate", str(data), "--against", str(mt_bench), str(arena), "--out", str(out), "--ngram-only"])
        == 0
    )
    report = json.loads((out / "decontamination.json").read_text(encoding="utf-8"))
    assert report["kept"] == 30
    kept = {r["instruction"] for r in _dataset_rows(out / "dataset")}
    assert not kept & set(planted)
