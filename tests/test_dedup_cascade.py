"""The dedup cascade, token-sorted batches and the saved dedup index (--against, --reuse)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from filters.base import FilterContext
from filters.dedup import SemanticDedup, dedup_files, dedup_records, index_folder, load_index
from filters.embed import SentenceTransformerEmbedder, normalize_rows
from generator.core.records import Record


class TableEmbedder:
    """Looks texts up in a table of vectors and records what it was asked to encode."""

    def __init__(self, table: dict[str, list[float]], name: str = "table", version: str = "1"):
        self.table, self.name, self.version = table, name, version
        self.calls: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.extend(texts)
        return normalize_rows(np.array([self.table[t] for t in texts], dtype=np.float32))


# The encoder: a/a2 and b/c are near-duplicates, d and e stand alone. The cheap pass agrees on which
# rows are near each other, with other numbers (it is another space).
FULL = {"a": [1, 0, 0], "a2": [1, 0.1, 0], "b": [0, 1, 0], "c": [0, 1, 0.05], "d": [0, 0, 1], "e": [1, 1, 1]}
CHEAP = {"a": [1, 0], "a2": [1, 0.2], "b": [0, 1], "c": [0.1, 1], "d": [-1, 0], "e": [-1, -1]}


def recs(*names: str) -> list[Record]:
    return [Record(instruction=n) for n in names]


def kept_of(flt: SemanticDedup, batches: list[list[str]]) -> list[str]:
    out = []
    for batch in batches:
        rs = recs(*batch)
        out += [r.instruction for r, v in zip(rs, flt.judge(rs)) if v.keep]
    return out


@pytest.mark.parametrize(
    "batches",
    [[["a", "b", "a2", "c", "d", "e"]], [["a", "b"], ["d"], ["a2", "c", "e"]], [["d"], ["e"], ["a"], ["a2"]]],
    ids=["one-batch", "across-batches", "one-by-one"],
)
def test_cascade_keeps_what_the_full_path_keeps_and_encodes_only_plausible_rows(batches: list[list[str]]) -> None:
    full = SemanticDedup(threshold=0.9, embedder=TableEmbedder(FULL))
    enc = TableEmbedder(FULL)
    cascade = SemanticDedup(threshold=0.9, embedder=enc, cheap=TableEmbedder(CHEAP), cascade=0.9)
    assert kept_of(cascade, batches) == kept_of(full, batches)
    seen = {t for b in batches for t in b}
    # d and e have no plausible neighbour: never encoded; every row of a pair is.
    assert set(enc.calls) == seen & {"a", "a2", "b", "c"}
    assert len(enc.calls) == len(set(enc.calls))
    assert cascade.counts["cascade_cleared"] + len(enc.calls) >= len(seen)


def test_cascade_encodes_a_kept_row_when_a_later_row_comes_near_it(tmp_path: Path) -> None:
    enc = TableEmbedder(FULL)
    flt = SemanticDedup(threshold=0.9, embedder=enc, cheap=TableEmbedder(CHEAP), cascade=0.9)
    flt.setup(FilterContext(state_dir=tmp_path))
    [a] = flt.judge(recs("a"))
    assert a.keep and enc.calls == []  # alone: kept without the encoder, and without a score
    [a2] = flt.judge(recs("a2"))
    assert not a2.keep and a2.detail["kept_id"] == Record("a").id
    assert sorted(enc.calls) == ["a", "a2"]
    flt.close()
    # A resumed run rebuilds the cheap index from the kept texts and replays without encoding.
    enc2 = TableEmbedder(FULL)
    again = SemanticDedup(threshold=0.9, embedder=enc2, cheap=TableEmbedder(CHEAP), cascade=0.9)
    again.setup(FilterContext(state_dir=tmp_path))
    assert [v.keep for v in again.judge(recs("a", "a2", "d"))] == [True, False, True]
    assert enc2.calls == []


def test_cascade_is_off_for_an_encoder_without_a_static_twin() -> None:
    flt = SemanticDedup(threshold=0.9, embedder=TableEmbedder(FULL), cascade=0.8)
    assert flt.cheap is None and flt.report()["cascade"] is None


class BatchModel:
    """A sentence-transformers stand-in: a text's vector is its length in words; records each batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        self.batches.append(list(texts))
        return np.array([[len(t.split()), 1.0] for t in texts], dtype=np.float32)


def test_batches_hold_texts_of_about_the_same_length_and_come_back_in_order() -> None:
    emb = SentenceTransformerEmbedder.__new__(SentenceTransformerEmbedder)
    emb.batch_size = 2
    model = BatchModel()
    texts = ["one two three four five six", "one", "one two three four five", "one two"]
    lengths = np.array([len(t.split()) for t in texts], dtype=np.float32)
    out = emb._encode_sorted(model, texts, lengths)
    assert model.batches == [["one", "one two"], ["one two three four five", "one two three four five six"]]
    np.testing.assert_array_equal(out[:, 0], lengths)


# -- the saved index --------------------------------------------------------------------------------


class CountingEmbedder:
    """Row i of a fixed random matrix for the text "task i": a corpus of any size, encoded for free,
    and a count of the texts it was asked to encode."""

    name, version = "counting", "1"

    def __init__(self, n: int, dim: int = 32):
        self.vectors = normalize_rows(np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32))
        self.encoded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += len(texts)
        return self.vectors[[int(t.split()[1]) for t in texts]]


def test_new_rows_against_a_50k_index_encode_only_the_new_rows(tmp_path: Path) -> None:
    corpus = [Record(f"task {i}") for i in range(50_000)]
    enc = CountingEmbedder(51_000)
    builder = SemanticDedup(embedder=enc, pair_check=False)  # the corpus, taken as deduplicated
    builder.against(corpus)
    builder.save_index(tmp_path / "index")
    assert enc.encoded == 50_000
    index = load_index(tmp_path / "index")
    assert index is not None and len(index.kept) == 50_000 and len(index.vectors) == 50_000

    enc.encoded = 0
    new = [Record(f"task {i}") for i in range(50_000, 51_000)] + corpus[:3]  # 3 already in the corpus
    result = dedup_records(new, embedder=enc, pair_check=False, against=index, exact_until=100_000)
    assert enc.encoded == 1_000
    assert [r.instruction for r in result.kept] == [r.instruction for r in new[:1_000]]
    assert [d.kept_id for d in result.dropped] == [r.id for r in corpus[:3]]


def test_a_threshold_change_re_decides_from_stored_vectors(tmp_path: Path) -> None:
    rows = [json.dumps(Record(n).to_row()) for n in ("a", "b", "a2", "c", "d")]
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    enc = TableEmbedder(FULL)
    first = dedup_files([tmp_path / "in.jsonl"], tmp_path / "out", threshold=0.9, embedder=enc)
    assert len(enc.calls) == 5 and len(first.kept) == 3
    index = load_index(index_folder(tmp_path / "out"))  # type: ignore[arg-type]
    assert index is not None and index.settings["threshold"] == 0.9 and index.encoder_version == "1"

    enc.calls.clear()
    again = dedup_records([Record(n) for n in ("a", "b", "a2", "c", "d")], threshold=0.999, embedder=enc, reuse=index)
    assert enc.calls == [] and len(again.kept) == 5


def test_an_index_of_another_encoder_version_is_refused(tmp_path: Path) -> None:
    dedup_records(recs("a", "b"), embedder=TableEmbedder(FULL), pair_check=False, save_index=tmp_path / "i")
    index = load_index(tmp_path / "i")
    assert index is not None
    with pytest.raises(ValueError, match=r"made with encoder table \(1\), this dedup uses table \(2\)"):
        dedup_records(recs("c"), embedder=TableEmbedder(FULL, version="2"), pair_check=False, against=index)
    assert load_index(tmp_path / "i", TableEmbedder(FULL, version="2")) is None


def test_against_a_dataset_takes_its_rows_as_kept() -> None:
    enc = TableEmbedder(FULL)
    result = dedup_records(recs("a2", "d", "b"), threshold=0.9, embedder=enc, against=recs("a", "b", "c"))
    assert [r.instruction for r in result.kept] == ["d"]
    assert sorted(d.reason for d in result.dropped) == ["exact_duplicate", "near_duplicate"]


def test_text_vectors_in_a_folder_are_read_back_by_the_next_session(tmp_path: Path) -> None:
    from filters.embed import TextVectors

    enc = TableEmbedder(FULL)
    first = TextVectors(tmp_path)
    v = first.encode(enc, ["a", "b"])
    assert enc.calls == ["a", "b"] and first.has(enc, ["a", "b"])
    enc.calls.clear()
    again = TextVectors(tmp_path)  # a rerun of the run
    np.testing.assert_array_equal(again.encode(enc, ["a", "b"]), v)
    assert enc.calls == []
    # Other texts, or another version of the encoder, are encoded.
    assert not again.has(TableEmbedder(FULL, version="2"), ["a", "b"]) and not again.has(enc, ["a"])


def test_dedup_against_a_previous_output_folder_writes_only_new_rows(tmp_path: Path) -> None:
    from generator.config import ReportConfig
    from generator.run.clean import dedup

    def write(name: str, *texts: str) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(Record(t).to_row()) + "\n" for t in texts))
        return path

    enc = TableEmbedder(FULL)
    off = ReportConfig(enabled=False)
    dedup([write("old.jsonl", "a", "b")], tmp_path / "old", threshold=0.9, embedder=enc, report=off)
    enc.calls.clear()
    dedup(
        [write("new.jsonl", "a2", "d", "c")],
        tmp_path / "new",
        threshold=0.9,
        embedder=enc,
        report=off,
        against=tmp_path / "old",
    )
    kept = [json.loads(line)["instruction"] for line in (tmp_path / "new" / "kept.jsonl").read_text().splitlines()]
    assert kept == ["d"] and sorted(enc.calls) == ["a2", "c", "d"]


# -- templated prompts ------------------------------------------------------------------------------


def test_fillings_of_one_template_are_two_tasks_and_a_reworded_template_is_one() -> None:
    """tests/data/templated_slots.jsonl: each group's paraphrase rewords the template around the same
    content; its negatives fill the same template with other content. The word frequencies are a
    corpus's where each template recurs (as in real multi-task prompts), beside the labeled texts."""
    from filters.pairs import WordFrequency, slots_differ

    groups = [json.loads(line) for line in (Path(__file__).parent / "data" / "templated_slots.jsonl").open()]
    freq = WordFrequency()
    freq.add([t for g in groups for t in (g["instruction"], *g["paraphrases"], *g["negatives"])])
    for g in groups:
        freq.add([g["template"]] * 20)
    para = [slots_differ(g["instruction"], p, freq) for g in groups for p in g["paraphrases"]]
    neg = [slots_differ(g["instruction"], n, freq) for g in groups for n in g["negatives"]]
    assert not any(para)
    assert sum(neg) >= 14, neg  # the two fillings of "Summarize this dialogue:" share too few words
    # Without a corpus behind them (no word is frequent), two texts alone are left to the pair check.
    alone = WordFrequency()
    alone.add([groups[0]["instruction"], groups[0]["negatives"][0]])
    assert not slots_differ(groups[0]["instruction"], groups[0]["negatives"][0], alone)


def test_the_dedup_keeps_two_fillings_of_a_frequent_template() -> None:
    template = 'Here is an app review: "{}"\nHow many stars would this reviewer give, from 1 to 5?'
    corpus = [template.format(f"filler words number {i} about nothing") for i in range(20)]
    a = template.format("The widget keeps crashing whenever I rotate my phone, and the sync button does nothing.")
    b = template.format("Lovely calendar layout, reminders arrive on time and the dark theme is easy on the eyes.")
    same = {t: [1.0, 0.0, 0.0] for t in (*corpus, a, b)}  # the encoder calls them all alike
    # Named as MiniLM, so that its fitted pair check is on.
    flt = SemanticDedup(embedder=TableEmbedder(same, name="st:all-MiniLM-L6-v2"))
    assert flt.pair is not None
    verdicts = flt.judge(recs(*corpus, a, b))
    assert verdicts[-1].keep and verdicts[-2].keep and flt.counts["slots_differ"] >= 1


def test_the_window_is_read_without_loading_the_model(tmp_path: Path) -> None:
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    emb = SentenceTransformerEmbedder(str(tmp_path))
    assert emb.window == 126 and emb._model is None  # a rerun's dedup report loads no model
