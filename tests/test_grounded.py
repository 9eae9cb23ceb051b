"""The `grounded` filter on a hand-written labeled set (tests/data/grounded_labeled.jsonl: passage,
answer, label supported / unsupported / copies): accuracy per class, and its reasons."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from filters.grounded import GroundedFilter
from generator.core.records import Record

LABELED = Path(__file__).parent / "data" / "grounded_labeled.jsonl"


def _record(answer: str, passage: str | None, kind: str = "factual") -> Record:
    meta = {"task_kind": kind, **({"source": {"text": passage}} if passage is not None else {})}
    return Record(instruction="Q?", output=answer, meta=meta)


def test_accuracy_per_class_on_the_labeled_set() -> None:
    rows = [json.loads(line) for line in LABELED.read_text(encoding="utf-8").splitlines()]
    verdicts = GroundedFilter().judge([_record(r["answer"], r["passage"], r["task_kind"]) for r in rows])
    right, total = Counter(), Counter()
    for row, v in zip(rows, verdicts):
        predicted = "supported" if v.keep else "copies" if v.reason == "copies_source" else "unsupported"
        total[row["label"]] += 1
        right[row["label"]] += predicted == row["label"]
    accuracy = {label: right[label] / total[label] for label in total}
    assert total["supported"] >= 25 and total["unsupported"] >= 20
    assert accuracy["supported"] >= 0.9 and accuracy["unsupported"] >= 0.9, accuracy
    assert accuracy["copies"] == 1.0


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
