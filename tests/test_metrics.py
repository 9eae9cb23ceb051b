"""The dataset measures (generator.report): numbers worked out by hand, constructed embeddings,
and one run of the real MiniLM encoder."""

from __future__ import annotations

import json
import math
import random
import warnings

import numpy as np
import pytest

from generator.report import measure, measure_embeddings
from generator.report.metrics import mean_pairwise_distance, sample_rows, vendi_score
from generator.report.ngrams import distinct_n, self_bleu, tokens
from generator.report.verbs import verb_noun

# -- embeddings ---------------------------------------------------------------------------------


def _clusters(k: int, per: int, noise: float, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """`per` rows around each of `k` orthogonal directions."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:k]
    truth = [c for c in range(k) for _ in range(per)]
    x = centres[truth] + noise * rng.normal(size=(k * per, dim))
    return x.astype(np.float32), truth


def test_identical_rows_have_vendi_one():
    x = np.tile(np.arange(1, 9, dtype=np.float32), (40, 1))
    assert vendi_score(x) == pytest.approx(1.0, abs=1e-6)
    assert mean_pairwise_distance(x) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("k", [2, 5, 12])
def test_orthogonal_clusters_have_vendi_k(k):
    # Exactly k orthogonal directions, equal shares: K/n has k eigenvalues 1/k, entropy log k.
    x, _ = _clusters(k, 30, noise=0.0)
    assert vendi_score(x) == pytest.approx(k, rel=1e-4)


@pytest.mark.parametrize("k", [3, 8])
def test_well_separated_clusters_give_about_k_and_are_found(k):
    x, truth = _clusters(k, 50, noise=0.005)  # within a cluster, cosines about 0.999
    m = measure_embeddings(x, clusters=k)
    assert m.vendi == pytest.approx(k, rel=0.1)
    # Each constructed cluster is one k-means cluster, and no two share a label.
    labels = {c: {m.clusters[i] for i, t in enumerate(truth) if t == c} for c in range(k)}
    assert all(len(v) == 1 for v in labels.values())
    assert len(set().union(*labels.values())) == k
    assert len(m.projection) == len(x) and all(len(p) == 2 for p in m.projection)


def test_mean_pairwise_distance_by_hand():
    # e1, e1, e2: pairs (e1, e1) 0, (e1, e2) 1, (e1, e2) 1 -> 2/3.
    x = np.array([[1, 0], [2, 0], [0, 3]], dtype=np.float32)
    assert mean_pairwise_distance(x) == pytest.approx(2 / 3, abs=1e-6)
    # Two orthogonal clusters of equal size: Vendi 2.
    assert vendi_score(np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)) == pytest.approx(2.0)


def test_nearest_seed_is_the_highest_cosine_to_a_seed():
    x = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=np.float32)
    seeds = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32)
    m = measure_embeddings(x, seeds)
    assert m.nearest_seed == pytest.approx([1.0, 1 / math.sqrt(2), 1.0], abs=1e-4)
    assert measure_embeddings(x).nearest_seed == []


# -- distinct-n and self-BLEU -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "n", "expected"),
    [
        (["the cat", "the dog"], 1, 3 / 4),  # the, cat, the, dog: 3 distinct of 4
        (["the cat", "the dog"], 2, 2 / 2),
        (["a a a a"], 1, 1 / 4),
        (["a a a a"], 2, 1 / 3),  # (a a) three times
        (["The cat.", "the cat"], 1, 3 / 5),  # case ignored; "." is a token: the cat . the cat
        (["one"], 2, 0.0),  # no bigram at all
    ],
    ids=["d1-two-texts", "d2-two-texts", "d1-repeats", "d2-repeats", "d1-case-punct", "d2-none"],
)
def test_distinct_n_by_hand(texts, n, expected):
    assert distinct_n(texts, n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        # Identical texts: every precision 1, same length.
        (["the cat sat on the mat", "the cat sat on the mat"], 1.0),
        # Nothing in common: no unigram match, BLEU 0.
        (["a b c", "d e f"], 0.0),
        # a b c d vs a b c e (and back): p1 3/4, p2 2/3, p3 1/2, p4 0 -> 0.1/1; equal lengths.
        (["a b c d", "a b c e"], (3 / 4 * 2 / 3 * 1 / 2 * 0.1) ** 0.25),
        # a b c vs a b c d e: the short one gets p1..p3 = 1, p4 no 4-gram -> 0.1/1, brevity
        # exp(1 - 5/3); the long one p1 3/5, p2 2/4, p3 1/3, p4 0.1/2, no brevity penalty.
        (["a b c", "a b c d e"], (math.exp(1 - 5 / 3) * 0.1**0.25 + (3 / 5 * 2 / 4 * 1 / 3 * 0.1 / 2) ** 0.25) / 2),
    ],
    ids=["identical", "disjoint", "one-word-differs", "brevity"],
)
def test_self_bleu_by_hand(texts, expected):
    assert self_bleu(texts) == pytest.approx(expected, abs=1e-9)


def test_self_bleu_equals_nltk_sentence_bleu_against_the_others():
    bleu = pytest.importorskip("nltk.translate.bleu_score")
    rng = random.Random(0)
    vocab = "a b c d e the cat dog sat on".split()
    smooth = bleu.SmoothingFunction().method1
    for _ in range(50):
        texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 9))) for _ in range(rng.randint(2, 6))]
        toks = [tokens(t) for t in texts]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NLTK warns about orders with no match
            ref = [
                bleu.sentence_bleu([t for j, t in enumerate(toks) if j != i], toks[i], smoothing_function=smooth)
                for i in range(len(toks))
            ]
        assert self_bleu(texts) == pytest.approx(sum(ref) / len(ref), abs=1e-9), texts


# -- verb-noun ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("Write a short poem about the ocean.", ("write", "poem")),
        ("Give three tips for staying healthy.", ("give", "tip")),
        ("Generate a list of ten fruits.", ("generate", "list")),
        ("Tell me a joke about cats.", ("tell", "joke")),
        ("Please classify the following sentence as positive or negative.", ("classify", "sentence")),
        ("Can you summarize the article below?", ("summarize", "article")),
        ("Given a list of numbers, find the largest number.", ("find", "number")),
        ("Write a Python function that reverses a string.", ("write", "function")),
        ("Write a short, friendly bio for a baker.", ("write", "bio")),
        ("Name three countries in Europe.", ("name", "country")),
        ("Write a docstring for the function.", ("write", "docstring")),
        ("Explain why the sky is blue.", ("explain", None)),
        ("You are given a paragraph. Rewrite it in passive voice.", ("rewrite", None)),
        ("What is the capital of France?", None),
        ("The weather is nice today.", None),
    ],
    ids=[
        "adjective",
        "plural-number",
        "list-of",
        "indirect-object",
        "please",
        "can-you",
        "given-clause",
        "compound-noun",
        "comma-adjectives",
        "name-as-verb",
        "unknown-word-noun",
        "no-object",
        "second-sentence",
        "question",
        "statement",
    ],
)
def test_verb_noun(instruction, expected):
    assert verb_noun(instruction) == expected


# -- measure() ----------------------------------------------------------------------------------


class _HashEmbedder:
    """Same text, same vector; different texts, (nearly) orthogonal vectors."""

    name = "hash"

    def encode(self, texts):
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, hash(t) % 256] = 1.0
        return out


def _rows(n: int) -> list[dict]:
    return [
        {
            "instruction": f"Write a poem about {i}.",
            "input": "" if i % 4 else f"about {i}",
            "output": "one two three",
            "meta": {"task_type": "generation" if i % 3 else "classification"},
        }
        for i in range(n)
    ]


def test_measure_samples_and_counts_every_row():
    rows = _rows(40)
    seeds = ["Write a poem about 0.", "Something else"]
    m = measure(rows, seeds, sample=10, encoder=_HashEmbedder(), seed=3, projection="pca")
    assert m.rows == 40 and m.sampled == 10
    assert m.sample_index == sorted(set(m.sample_index)) and len(m.sample_index) == 10
    assert len(m.clusters) == len(m.projection) == len(m.nearest_seed) == 10
    assert m.lengths["instruction"] == [5] * 40 and m.lengths["output"] == [3] * 40
    assert m.lengths["input"][0] == 2 and m.lengths["input"][1] == 0
    assert m.share_with_input == pytest.approx(10 / 40)
    assert m.task_types == {"generation": 26, "classification": 14}
    assert m.verbs == [("write", "poem", 40)] and m.verb_coverage == 1.0
    # Row 0 is a seed: when sampled, its nearest seed similarity is 1.
    if 0 in m.sample_index:
        assert m.nearest_seed[m.sample_index.index(0)] == pytest.approx(1.0)
    json.dumps(m.to_dict())
    assert set(m.seconds) >= {"encode", "vendi", "self_bleu", "verbs", "projection"}


def test_unknown_projection_is_named():
    with pytest.raises(ValueError, match="unknown projection 'umap'; expected one of: pca, tsne"):
        measure(_rows(5), encoder=_HashEmbedder(), projection="umap")


def test_sample_is_reproducible_and_covers_small_inputs():
    assert sample_rows(5, 10) == [0, 1, 2, 3, 4]
    assert sample_rows(1000, 50, seed=1) == sample_rows(1000, 50, seed=1)
    assert sample_rows(1000, 50, seed=1) != sample_rows(1000, 50, seed=2)


def test_measure_with_the_bundled_encoder():
    """The real MiniLM: identical instructions are one point (Vendi 1); a row that is a seed is at
    similarity 1 to it; unrelated tasks spread out."""
    same = [{"instruction": "Write a haiku about autumn.", "input": "", "output": "x"}] * 6
    m = measure(same, ["Write a haiku about autumn."])
    assert m.vendi == pytest.approx(1.0, abs=1e-3)
    assert m.nearest_seed_median == pytest.approx(1.0, abs=1e-3)
    varied = [
        {"instruction": t, "input": "", "output": "x"}
        for t in [
            "Write a haiku about autumn.",
            "Sort the list of numbers in ascending order.",
            "Translate the sentence into French.",
            "Explain how photosynthesis works.",
        ]
    ]
    assert measure(varied).vendi > 2.0
