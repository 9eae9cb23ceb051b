"""Lineage: every kept row and every row in rejected.jsonl of a run says how it was made (template
and the hash of its text, model and revision, sampling, seed tasks, round, filter scores); a
duplicate names the row it duplicates. The server is the fake one (exact shapes, no model)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from fake_run import NO_REPORT_YAML

from generator.config import load_config
from generator.core.readers import decode_meta
from generator.core.records import record_id
from generator.prompting.roles import load_templates
from generator.run.pipeline import generate

pytestmark = pytest.mark.fake_server

LINEAGE = ("template", "template_hash", "model", "model_revision", "sampling_hash", "seed_ids", "round")


@pytest.fixture(scope="module", params=["exact", "near"])
def run_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A run whose duplicates are exact copies of a kept instruction (the fake server echoes its
    prompt), or near copies (`variants`: each echoed line tagged differently per request)."""
    fake = FakeOpenAI(variants=request.param == "near")
    fake.start_in_thread()
    tmp = tmp_path_factory.mktemp(f"lineage-{request.param}")
    cfg = tmp / "config.yaml"
    cfg.write_text(
        f"run_dir: {tmp / 'run'}\n"
        "model: {name: fake, served_name: fake-model, revision: v1.2}\n"
        f"server: {{endpoints: [{fake.url}]}}\n"
        "generation: {num_instructions: 30, instances: response, max_rounds: 4}\n"
        "filters:\n"
        "  instructions: [{name: length}, {name: exact_dedup},"
        " {name: semantic_dedup, pair_check: false, threshold: 0.6}]\n"
        "  records: [{name: truncated}]\n" + NO_REPORT_YAML
    )
    try:
        generate(load_config(cfg), progress=False)
    finally:
        fake.stop_thread()
    yield tmp / "run"


def _kept(run_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for shard in sorted((run_dir / "dataset" / "data").glob("*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return rows


def _rejected(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "rejected.jsonl").read_text().splitlines()]


def _template_hashes(run_dir: Path) -> dict[str, str]:
    config = load_config(run_dir.parent / "config.yaml")
    return {t.name: hashlib.sha256(t.source.encode()).hexdigest()[:12] for t in load_templates(config).values()}


def _check_lineage(meta: dict, hashes: dict[str, str]) -> None:
    missing = [k for k in LINEAGE if k not in meta]
    assert not missing, f"missing {missing} in {meta}"
    assert meta["template_hash"] == hashes[meta["template"]]
    assert meta["model"] == "fake-model" and meta["model_revision"] == "v1.2"
    assert meta["seed_ids"] and all(isinstance(s, str) for s in meta["seed_ids"])
    assert isinstance(meta["round"], int)


def test_every_kept_row_carries_its_lineage(run_dir: Path) -> None:
    rows = _kept(run_dir)
    hashes = _template_hashes(run_dir)
    assert rows
    sampling = set()
    for row in rows:
        meta = decode_meta(row["meta"])
        _check_lineage(meta, hashes)
        assert meta["response_template_hash"] == hashes[meta["response_template"]]
        # semantic_dedup scores what it keeps (the first kept has nothing before it).
        assert "dedup_similarity" in meta.get("scores", {}) or meta["round"] == 0
        sampling.add(meta["sampling_hash"])
    assert len(sampling) == 1  # one run, one sampling configuration


def test_every_rejected_row_carries_lineage_filter_reason_and_detail(run_dir: Path) -> None:
    rejected = _rejected(run_dir)
    hashes = _template_hashes(run_dir)
    assert rejected
    for r in rejected:
        assert r["filter"] and r["reason"]
        _check_lineage(r["record"]["meta"], hashes)


def test_a_duplicate_names_its_kept_twin(run_dir: Path) -> None:
    rejected = _rejected(run_dir)
    dups = [r for r in rejected if r["reason"] in ("exact_duplicate", "near_duplicate")]
    assert dups
    exact = run_dir.parent.name.startswith("lineage-exact")
    assert {d["reason"] for d in dups} == {"exact_duplicate" if exact else "near_duplicate"}
    dropped = {r["record"]["id"] for r in rejected}
    kept = {row["id"] for row in _kept(run_dir)}
    for d in dups:
        if d["reason"] == "exact_duplicate":
            # The same text, so the same id as its twin: a row of the dataset.
            assert d["kept_id"] in kept
        else:
            # The twin is an instruction the chain kept (it may still have been cut as over the target).
            assert d["kept_id"] not in dropped and d["kept_id"] != d["record"]["id"]
            assert d["similarity"] >= 0.6 and record_id(d["kept_text"]) == d["kept_id"]
