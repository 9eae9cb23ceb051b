"""Decontamination against a reference file: n-gram overlap and semantic overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from filters.decontam import Decontaminate, load_reference, ngrams
from filters.embed import normalize_rows
from filters.specs import parse_specs
from generator.core.errors import ConfigError
from generator.core.records import Record

REF = Path(__file__).parent / "data" / "reference_prompts.jsonl"
LEAK = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether?"
)


class BagEmbedder:
    """A bag of words over a tiny vocabulary: enough to make cosine mean word overlap."""

    name = "bag"
    VOCAB = ("haiku", "ocean", "sea", "poem", "sort", "list", "natalia", "clips")

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = [[t.lower().count(w) for w in self.VOCAB] for t in texts]
        return normalize_rows(np.array(rows, dtype=np.float32) + 1e-3)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (Record(instruction="Solve this.", input=LEAK), "ngram_overlap"),
        (Record(instruction="Solve it.", output=f"The problem: {LEAK} Answer: 72."), "ngram_overlap"),
        (Record(instruction="write a HAIKU about the ocean!"), "ngram_overlap"),
        (Record(instruction="Ocean haiku, please: write one."), "semantic_overlap"),
        (Record(instruction="Sort the list of numbers."), ""),
        (Record(instruction="Natalia counted the apples in June."), ""),
    ],
    ids=["input-leak", "output-leak", "short-reference-whole", "paraphrase", "clean", "same-topic-no-leak"],
)
def test_decontaminate(record: Record, reason: str) -> None:
    flt = Decontaminate(references=[str(REF)], threshold=0.95, embedder=BagEmbedder())
    verdict = flt.judge([record])[0]
    assert verdict.reason == reason and verdict.keep is (reason == "")


def test_kept_records_score_their_nearest_benchmark_item() -> None:
    flt = Decontaminate(texts=["Write a haiku about the sea."], threshold=0.95, embedder=BagEmbedder())
    [near, far] = flt.judge([Record(instruction="Write a poem about the sea."), Record(instruction="Sort it.")])
    bag = BagEmbedder()
    # The same cosine the filter compares with `threshold`: a text's bag of words against the reference's.
    expected = float(bag.encode(["Write a poem about the sea."])[0] @ bag.encode(["Write a haiku about the sea."])[0])
    assert near.keep and near.scores["benchmark_similarity"] == pytest.approx(expected, abs=1e-4)
    assert far.keep and far.scores["benchmark_similarity"] < near.scores["benchmark_similarity"]


def test_ngram_size_is_configurable() -> None:
    rec = Record(instruction="Natalia sold clips to 48 of her friends in April, I heard.")
    assert Decontaminate(texts=[LEAK], ngram=13, threshold=None).judge([rec])[0].keep
    assert not Decontaminate(texts=[LEAK], ngram=8, threshold=None).judge([rec])[0].keep


def test_ngrams_are_normalized() -> None:
    assert ngrams("One, TWO three", 2) == ngrams("one two  three!", 2)
    assert len(ngrams("a b c d", 2)) == 3


def test_no_references_is_refused() -> None:
    with pytest.raises(ValueError, match="decontaminate needs `references`"):
        Decontaminate(embedder=BagEmbedder())


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({}, r"missing key 'f\[0\]\.references'"),
        ({"references": []}, r"key 'f\[0\]\.references': List should have at least 1 item"),
        (
            {"references": ["x"], "ngram": 0},
            r"key 'f\[0\]\.ngram': Input should be greater than or equal to 1 "
            r"\(got 0\)",
        ),
        (
            {"references": ["x"], "threshold": 2.0},
            r"key 'f\[0\]\.threshold': Input should be less than or equal "
            r"to 1 \(got 2\.0\)",
        ),
    ],
    ids=["no-references", "empty-references", "bad-ngram", "bad-threshold"],
)
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_specs([{"name": "decontaminate", **params}], where="f")


def test_reference_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"reference '.*missing\.jsonl' not found"):
        load_reference(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": 1}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl: line 1: cannot tell the format from the keys label"):
        load_reference(str(bad))
