"""`generation.method: documents`: what it asks for (task mix, passage as input, backtranslation,
multi-hop pairs), the corpus in the fingerprint by content, skipped files in the funnel, and a run
end to end against the fake server (tests/fake_openai.py) that resumes without sending again."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from fake_run import fake_settings

from generator.config import parse_config
from generator.core.readers import read_records
from generator.methods.documents import Documents
from generator.prompting.roles import load_templates
from generator.run.context import fingerprint, open_method, open_run
from generator.run.store import ForeignRun

GUIDE = """# Guide

The widget tool converts spreadsheets into charts. It reads CSV files and writes PNG images.

## Install

Install the widget tool with pip. It needs Python 3.11 and the numpy package.

## Colours

Charts use the viridis palette by default. The --palette option picks another palette.
"""


def _reply(body: dict[str, Any], i: int) -> str:
    """A grounded answer: the first sentence of the passage shown; an instruction for backtranslation."""
    prompt = body["messages"][-1]["content"]
    passage = prompt.split('"""')[1].strip() if '"""' in prompt else prompt
    sentence = next((s for s in re.split(r"(?<=\.)\s+", passage) if not s.startswith("#")), passage)
    if "Write only the instruction" in prompt:
        return f"Explain what the guide says in the part that begins: {sentence[:40]}"
    words = re.findall(r"[a-z]{5,}", sentence.lower())
    return json.dumps(
        {"tasks": [{"instruction": f"What does the guide say about the {w}?", "output": sentence} for w in words[:2]]}
    )


FAKE_OPTIONS = {"reply": _reply}


def _config(tmp_path: Path, **documents: Any) -> Any:
    (tmp_path / "guide.md").write_text(GUIDE, encoding="utf-8")
    section = {
        "paths": ["guide.md"],
        "chunk_unit": "words",
        "chunk_size": 40,
        "chunk_overlap": 4,
        "min_chunk": 3,
        **documents,
    }
    data = {"generation": {"method": "documents", "instructions_per_prompt": 2, "documents": section}}
    return parse_config(data, base_dir=tmp_path)


def _method(config: Any, embedder: Any = None) -> Documents:
    method = open_method(config, [], load_templates(config))
    method.inputs.embedder = embedder
    assert isinstance(method, Documents)
    return method


class _Embedder:
    """Vectors by which of two words a chunk holds: Install and Colours are neighbours."""

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = [[1.0, 0.0] if "widget" in t and "pip" not in t else [0.0, 1.0] for t in texts]
        return np.asarray(rows, dtype=np.float32)


def test_chunks_and_asks_are_the_same_every_time_and_cover_every_chunk(tmp_path: Path) -> None:
    config = _config(tmp_path, tasks={"factual": 1, "summary": 1})
    first, second = _method(config), _method(config)
    assert [c.section for c in first.chunks] == ["Guide", "Guide > Install", "Guide > Colours"]
    asks = first.asks([], 0, 3)
    assert [(a.variables, a.meta, a.record) for a in asks] == [
        (a.variables, a.meta, a.record) for a in second.asks([], 0, 3)
    ]
    assert sorted(a.meta["source"]["chunk"] for a in asks) == [0, 1, 2]  # a pass covers every chunk once
    for ask in asks:
        src = ask.meta["source"]
        assert src["document"] == "guide.md" and len(src["sha256"]) == 64
        assert GUIDE[src["span"][0] : src["span"][1]] == src["text"] == ask.variables["passage"]
        # summary always carries the passage as input; factual stands alone unless asked
        assert ask.record == ({"input": src["text"]} if ask.meta["task_kind"] == "summary" else {})
    later = first.asks([], 1, 3)  # the next round goes on with the plan: a second pass, attempt 1
    assert {a.variables["attempt"] for a in later} == {1}


def test_passage_as_input_and_backtranslation(tmp_path: Path) -> None:
    asks = _method(_config(tmp_path, tasks={"factual": 1}, passage_as_input=True)).asks([], 0, 2)
    assert all(a.record["input"] == a.meta["source"]["text"] for a in asks)
    assert all(a.variables["standalone"] is False for a in asks)
    back = _method(_config(tmp_path, tasks={"backtranslation": 1})).asks([], 0, 2)
    assert all(a.template.name == "documents_backtranslation" for a in back)
    assert all(a.record == {"output": a.meta["source"]["text"]} for a in back)


def test_multi_hop_pairs_embedding_neighbours_from_other_sections(tmp_path: Path) -> None:
    method = _method(_config(tmp_path, tasks={"multi_hop": 1}), _Embedder())
    assert [method.partner(i) for i in range(3)] == [1, 2, 1]  # never its own section
    ask = next(a for a in method.asks([], 0, 3) if a.meta["source"]["chunk"] == 1)
    assert ask.variables["second_section"] == "Guide > Colours"
    assert ask.meta["source"]["also"]["section"] == "Guide > Colours"
    assert ask.meta["source"]["text"].endswith(method.chunks[2].text)


def test_the_corpus_is_in_the_fingerprint_by_content(tmp_path: Path) -> None:
    config = _config(tmp_path)
    fp = fingerprint(config, _method(config)).settings["generation"]["documents"]
    assert fp["corpus"] == [_method(config).corpus.documents[0].sha256[:16]] and fp["chunk_unit_used"] == "words"
    (tmp_path / "guide.md").rename(tmp_path / "renamed.md")
    renamed = _config(tmp_path, paths=["renamed.md"])
    (tmp_path / "guide.md").unlink()
    moved = fingerprint(renamed, _method(renamed)).settings["generation"]["documents"]
    assert moved["corpus"] == fp["corpus"]


def test_an_edited_document_is_a_changed_run_that_names_it(tmp_path: Path, fake: FakeOpenAI) -> None:
    data = fake_settings(tmp_path / "run", fake.url, generation=_config(tmp_path).generation.model_dump())
    run = open_run(parse_config(data, base_dir=tmp_path))
    run.store.close()
    (tmp_path / "guide.md").write_text(GUIDE + "\nOne more line.\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("# Notes\n\nUnchanged notes file.\n", encoding="utf-8")
    with pytest.raises(ForeignRun, match=r"generation.documents.corpus.*new or edited documents: guide.md"):
        open_run(parse_config(data, base_dir=tmp_path))


def test_bad_files_stop_before_any_server_or_are_skipped_and_counted(tmp_path: Path, fake: FakeOpenAI) -> None:
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    generation = _config(tmp_path, paths=["guide.md", "broken.pdf"]).generation.model_dump()
    data = fake_settings(tmp_path / "run", fake.url, generation=generation)
    served = sum(fake.served.values())
    with pytest.raises(Exception, match=r"broken.pdf: pypdf cannot read it as a PDF"):
        open_run(parse_config(data, base_dir=tmp_path))
    assert sum(fake.served.values()) == served
    data["generation"]["documents"]["on_bad_file"] = "skip"
    run = open_run(parse_config(data, base_dir=tmp_path))
    run.store.close()
    funnel = run.funnel.generation
    assert funnel.drops == {"sources": {"broken_pdf": 1}} and funnel.candidates == 1
    assert funnel.examples["sources/broken_pdf"][0]["instruction"] == "broken.pdf"


def test_a_documents_run_end_to_end_cites_its_sources_and_resumes(tmp_path: Path, fake: FakeOpenAI) -> None:
    from generator.run.pipeline import generate

    generation = _config(tmp_path, tasks={"factual": 2, "backtranslation": 1}).generation.model_dump()
    generation.update(num_instructions=4, max_rounds=2)
    data = fake_settings(tmp_path / "run", fake.url, generation=generation, report={"enabled": False})
    config = parse_config(data, base_dir=tmp_path)
    result = generate(config, progress=False)
    rows = read_records([result.dataset_dir])
    assert rows
    for row in rows:
        src = row.meta["source"]
        assert src["document"] == "guide.md" and GUIDE[src["span"][0] : src["span"][1]] == src["text"]
        assert row.meta["task_kind"] in ("factual", "backtranslation")
        assert row.output and (row.output in src["text"] or row.meta["task_kind"] == "backtranslation")
    # sources.json: the corpus's coverage by the kept rows, for the report and the card.
    sources = json.loads((result.run_dir / "sources.json").read_text())
    (guide,) = sources["documents"]
    chunks = {(r.meta["source"]["chunk"]) for r in rows}
    assert guide["rows"] == len(rows) and guide["used"] == len(chunks) == sources["chunks_used"]
    assert guide["chunks"] == sources["chunks"] >= guide["asked"] >= guide["used"] and sources["unused"] == []
    card = (result.dataset_dir / "README.md").read_text()
    assert "| documents | 1 read, " in card
    assert "| seed tasks | none (documents: the passages of `generation.documents.paths`) |" in card
    served = sum(fake.served.values())
    again = generate(parse_config(data, base_dir=tmp_path), progress=False)  # resume: nothing is sent again
    assert sum(fake.served.values()) == served
    assert [r.id for r in read_records([again.dataset_dir])] == [r.id for r in rows]
    assert json.loads((again.run_dir / "sources.json").read_text()) == sources


def test_coverage_counts_each_documents_chunks_rows_and_the_documents_nothing_came_from(tmp_path: Path) -> None:
    from generator.core.records import Record
    from generator.documents.coverage import corpus_coverage

    (tmp_path / "notes.txt").write_text("Nothing in these notes is asked about.\n", encoding="utf-8")
    method = _method(_config(tmp_path, paths=["guide.md", "notes.txt"]))
    guide = [c for c in method.chunks if c.document == 0]
    first, second = (method.source(c) for c in guide[:2])
    rows = [
        Record(instruction="a", meta={"source": first}),
        Record(instruction="b", meta={"source": first}),
        Record(instruction="c", meta={"source": {**second, "also": first}}),  # multi-hop: uses two chunks
        Record(instruction="d", meta={"task_type": "other"}),  # no source: not counted
    ]
    cov = corpus_coverage(method.corpus, method.chunks, [0, 1, 2], rows)
    assert [(d["document"], d["chunks"], d["asked"], d["used"], d["rows"]) for d in cov["documents"]] == [
        ("guide.md", len(guide), 3, 2, 3),
        ("notes.txt", 1, 0, 0, 0),
    ]
    assert cov["chunks"] == len(method.chunks) and cov["chunks_used"] == 2
    assert cov["covered"] == round(2 / len(method.chunks), 4) and cov["unused"] == ["notes.txt"]


def test_an_estimate_pilots_a_documents_run_that_then_goes_on_from_it(tmp_path: Path, fake: FakeOpenAI) -> None:
    from generator.run.pipeline import estimate, generate

    generation = _config(tmp_path, tasks={"factual": 1}).generation.model_dump()
    generation.update(num_instructions=2, num_records=4, max_rounds=4)
    data = fake_settings(tmp_path / "run", fake.url, generation=generation, report={"enabled": False})
    before = sum(fake.served.values())
    pilot, guess = estimate(parse_config(data, base_dir=tmp_path), progress=False)
    assert guess is not None and pilot.records > 0
    assert guess.summary().startswith(f"estimate for 4 records (from {pilot.records} kept so far")
    piloted = sum(fake.served.values()) - before
    assert piloted > 0
    sent = (tmp_path / "run" / "results.jsonl").read_text().count("\n")
    result = generate(parse_config(data, base_dir=tmp_path), progress=False)
    # The run goes on from the pilot: what the pilot stored is not asked again.
    assert (tmp_path / "run" / "results.jsonl").read_text().count("\n") - sent == sum(
        fake.served.values()
    ) - before - piloted
    assert result.records == 4
