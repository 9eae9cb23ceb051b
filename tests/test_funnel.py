"""The funnel through a real chain: every candidate is kept or dropped exactly once, drops are
counted per filter and reason, redactions per kind, and the counts survive JSON and merging."""

from __future__ import annotations

import json
from pathlib import Path

from filters.base import Chain, Funnel
from filters.registry import build_chain
from filters.specs import parse_specs
from generator.core.records import Record

SPECS = [
    {"name": "truncated"},
    {"name": "length", "min_words": 3},
    {"name": "blocklist"},
    {"name": "instance"},
    {"name": "repetition"},
    {"name": "refusal"},
    {"name": "pii", "action": "redact"},
    {"name": "exact_dedup"},
]

OK = "Plants turn light, water and carbon dioxide into sugar and oxygen."
RECORDS = [
    Record("Explain how photosynthesis works.", "", OK),  # kept
    Record("Explain photosynthesis to a child.", "", OK, {"finish_reason": "length"}),  # truncated
    Record("Sort it.", "", "Done."),  # too_short
    Record("Describe the attached image in detail.", "", OK),  # blocked_keyword
    Record("Describe the picture of the beach.", "", OK),  # blocked_keyword
    Record("Summarize the water cycle briefly.", "", ""),  # empty_output
    Record("Summarize the water cycle in a sentence.", "", "I'm sorry, I cannot."),  # refusal
    Record(
        "Write an email to a colleague.", "", "Hi, reach me at jane.roe@gmail.com or (415) 555-2671 and cc bob@corp.io."
    ),  # kept, redacted
    Record("Explain how photosynthesis works!", "", OK),  # exact_duplicate
    Record("Name the largest planet in the solar system.", "", "Sure. " + "Jupiter is big. " * 10),
]


def run(records: list[Record], tmp_path: Path) -> tuple[Chain, list[Record]]:
    chain = Chain(build_chain(parse_specs(SPECS, where="specs")), rejected_path=tmp_path / "rejected.jsonl")
    kept: list[Record] = []
    for i in range(0, len(records), 4):  # several batches, as the pipeline sends them
        kept.extend(chain.run(records[i : i + 4]).kept)
    return chain, kept


def test_counts_add_up_per_filter_and_reason(tmp_path: Path) -> None:
    chain, kept = run(RECORDS, tmp_path)
    f = chain.funnel
    assert f.candidates == len(RECORDS) == f.kept + f.dropped
    assert f.kept == len(kept) == 2
    assert {name: dict(r) for name, r in f.drops.items()} == {
        "truncated": {"truncated": 1},
        "length": {"too_short": 1},
        "blocklist": {"blocked_keyword": 2},
        "instance": {"empty_output": 1},
        "refusal": {"refusal": 1},
        "repetition": {"degenerate_loop": 1},
        "exact_dedup": {"exact_duplicate": 1},
    }
    assert {name: dict(k) for name, k in f.redactions.items()} == {"pii": {"email": 2, "phone": 1}}
    assert f.examples["blocklist/blocked_keyword"][0]["keyword"] == "attached"


def test_redacted_record_flows_on(tmp_path: Path) -> None:
    _, kept = run(RECORDS, tmp_path)
    email = next(r for r in kept if r.instruction.startswith("Write an email"))
    assert email.output == "Hi, reach me at <EMAIL> or <PHONE> and cc <EMAIL>."
    assert email.meta["pii_redacted"] == {"email": 2, "phone": 1}


def test_rejected_side_file_has_every_drop(tmp_path: Path) -> None:
    chain, _ = run(RECORDS, tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert len(lines) == chain.funnel.dropped
    assert {(x["filter"], x["reason"]) for x in lines} >= {("truncated", "truncated"), ("refusal", "refusal")}


def test_funnel_round_trips_and_merges(tmp_path: Path) -> None:
    chain, _ = run(RECORDS, tmp_path)
    path = tmp_path / "funnel.json"
    chain.funnel.write(path)
    loaded = Funnel.from_dict(json.loads(path.read_text()))
    assert loaded.to_dict() == chain.funnel.to_dict()
    loaded.merge(chain.funnel)
    assert loaded.candidates == 2 * len(RECORDS) == loaded.kept + loaded.dropped
    assert loaded.redactions["pii"] == {"email": 4, "phone": 2}
    assert loaded.drops["blocklist"]["blocked_keyword"] == 4
    assert len(loaded.examples["blocklist/blocked_keyword"]) == 3  # capped at KEEP_EXAMPLES
