"""The `grounded` filter on two hand-written labeled sets (tests/data/grounded_labeled.jsonl, which
its rules were tuned on, and grounded_heldout.jsonl, written afterwards over other passages and every
task kind: passage, answer, label supported / unsupported / copies): accuracy per class, and its reasons."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from filters.grounded import GroundedFilter
from generator.core.records import Record

DATA = Path(__file__).parent / "data"
LABELED = DATA / "grounded_labeled.jsonl"
HELDOUT = DATA / "grounded_heldout.jsonl"


def _record(answer: str, passage: str | None, kind: str = "factual") -> Record:
    meta = {"task_kind": kind, **({"source": {"text": passage}} if passage is not None else {})}
    return Record(instruction="Q?", output=answer, meta=meta)


@pytest.mark.parametrize("path", [LABELED, HELDOUT], ids=["tuned-on", "held-out"])
def test_accuracy_per_class_on_the_labeled_sets(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    verdicts = GroundedFilter().judge([_record(r["answer"], r["passage"], r["task_kind"]) for r in rows])
    right, total = Counter(), Counter()
    for row, v in zip(rows, verdicts):
        predicted = "supported" if v.keep else "copies" if v.reason == "copies_source" else "unsupported"
        total[row["label"]] += 1
        right[row["label"]] += predicted == row["label"]
    accuracy = {label: right[label] / total[label] for label in total}
    assert total["supported"] >= 24 and total["unsupported"] >= 20
    assert accuracy["supported"] >= 0.9 and accuracy["unsupported"] >= 0.9, accuracy
    assert accuracy.get("copies", 1.0) == 1.0
    assert len({r["task_kind"] for r in rows}) >= (4 if path == HELDOUT else 1)


def test_a_json_answer_is_read_by_its_values_not_the_structures_keys() -> None:
    passage = "The canal opened in 1842 and has 19 locks."
    good = '{"facts": [{"subject": "canal", "fact": "opened in 1842"}, {"subject": "canal", "fact": "19 locks"}]}'
    bad = '{"facts": [{"subject": "canal", "fact": "built by navvies from Ireland"}]}'
    assert GroundedFilter().judge_one(_record(good, passage, "extraction")).keep
    assert GroundedFilter().judge_one(_record(bad, passage, "extraction")).reason == "unsupported"
    assert GroundedFilter().judge_one(_record('{"facts": broken', passage, "extraction")).reason == "unsupported"


def test_inflections_and_numbers_in_words_match() -> None:
    passage = "Side effects lasted one to two days. Members borrow twelve items at most."
    assert GroundedFilter().judge_one(_record("Mostly the effects were lasting two days.", passage)).keep
    assert GroundedFilter().judge_one(_record("Members may borrow 12 items.", passage)).keep
    v = GroundedFilter(min_support=0.0).judge_one(_record("Members may borrow three items.", passage))
    assert not v.keep and v.detail["numbers"] == ["3"]


def test_numbers_not_in_the_passage_are_unsupported() -> None:
    v = GroundedFilter(min_support=0.0).judge_one(_record("It costs 45 euros.", "It costs 40 euros."))
    assert not v.keep and v.reason == "unsupported" and v.detail["numbers"] == ["45"]


def test_copy_limit_per_task_kind() -> None:
    passage = " ".join(f"word{i}" for i in range(40))
    flt = GroundedFilter(max_copy={"default": 10, "extraction": 30, "backtranslation": None})
    assert flt.judge_one(_record(passage, passage)).reason == "copies_source"
    assert flt.judge_one(_record(" ".join(passage.split()[:20]), passage, "extraction")).keep
    assert flt.judge_one(_record(passage, passage, "backtranslation")).keep


def test_rows_without_a_passage_are_kept() -> None:
    assert GroundedFilter().judge_one(_record("Anything at all.", None)).keep
