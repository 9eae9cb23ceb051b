"""The run report: written at the end of a run into the dataset folder, opened in headless Chromium
(tests/browser.py) as a person would open it from disk: no console error, no network request,
a page with content, the funnel's numbers equal to funnel.json, the dropped rows of a reason one
click away. Also: the card's section, the push, `report --dataset`, and text that tries to break
out of the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import colour_stats, find_chromium, open_page
from fake_run import fake_in_thread, fake_settings

from generator.cli import main
from generator.config import parse_config
from generator.publish.hub import push_dataset
from generator.run.clean import decontaminate
from generator.run.pipeline import generate

# What the page shows of the funnel, read from the DOM.
FUNNEL_JS = """(() => {
  const t = document.querySelector('#funnel-table');
  const num = (el) => Number(el.textContent.replaceAll(',', ''));
  const rows = [...t.querySelectorAll('tr.reason')].map(tr =>
    [tr.dataset.stage, tr.dataset.reason, num(tr.querySelector('[data-funnel=drop]'))]);
  return {candidates: num(t.querySelector('[data-funnel=candidates]')),
          kept: num(t.querySelector('[data-funnel=kept]')), rows};
})()"""


def _click_reason(stage: str, reason: str) -> str:
    """Click a reason's row, then read the dropped-rows panel."""
    return f"""(() => {{
  const tr = [...document.querySelectorAll('#funnel-table tr.reason')]
    .find(r => r.dataset.stage === {json.dumps(stage)} && r.dataset.reason === {json.dumps(reason)});
  tr.click();
  const box = document.getElementById('drops');
  return {{hidden: box.hidden, title: box.querySelector('h3').textContent,
          rows: [...box.querySelectorAll('.drop')].map(d => d.textContent)}};
}})()"""


@pytest.fixture(scope="module")
def browser_ready() -> None:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: `make setup` installs it (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, object]]:
    tmp = tmp_path_factory.mktemp("report")
    with fake_in_thread(variants=True) as server:
        settings = fake_settings(
            tmp / "run",
            server.url,
            engine={"concurrency": 8},
            generation={"num_instructions": 30, "instances": "response"},
            # The fake server echoes prompts; a short output limit gives the record chain drops.
            filters={
                "instructions": [{"name": "length", "min_words": 6}, {"name": "exact_dedup"}],
                "records": [{"name": "truncated"}, {"name": "length", "max_words": 14}],
            },
            dataset={"test_ratio": 0.2},
            report={"enabled": True, "gpu_hour_cost": 2.5},
        )
        result = generate(parse_config(settings), progress=False)
    yield tmp / "run", result


@pytest.mark.fake_server
def test_a_run_writes_its_report_beside_the_dataset_and_names_it_last(fake_run) -> None:
    run_dir, result = fake_run
    report = run_dir / "dataset" / "report.html"
    assert report.is_file()
    assert result.summary().splitlines()[-1] == f"report: {report}"
    html = report.read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html and " src=" not in html
    card = (run_dir / "dataset" / "README.md").read_text(encoding="utf-8")
    assert "## Quality and diversity" in card and "(report.html)" in card
    data = json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert f"| Vendi score (effective number of distinct instructions) | {data['diversity']['scores'][0][1]} |" in card
    assert "cost per 1,000 kept rows" in dict(data["summary"])


def test_the_report_opens_in_chromium_offline_and_shows_the_funnel_of_funnel_json(
    fake_run, browser_ready, tmp_path: Path
) -> None:
    run_dir, _ = fake_run
    funnel = json.loads((run_dir / "funnel.json").read_text())
    rejected = [json.loads(line) for line in (run_dir / "rejected.jsonl").read_text().splitlines()]
    dropped_by_length = [r for r in rejected if r["filter"] == "length" and r["reason"] == "too_long"]
    assert dropped_by_length, "the run should drop long outputs (see the config above)"
    visit = open_page(
        run_dir / "dataset" / "report.html",
        {"funnel": FUNNEL_JS, "ready": "document.body.dataset.ready", "drops": _click_reason("length", "too_long")},
    )
    assert visit.errors == []
    assert visit.network == []
    assert visit.values["ready"] == "1"
    shown = visit.values["funnel"]
    assert shown["candidates"] == funnel["candidates"] and shown["kept"] == funnel["kept"]
    expected = sorted([s, r, n] for s, reasons in funnel["drops"].items() for r, n in reasons.items())
    assert sorted(shown["rows"]) == expected
    drops = visit.values["drops"]
    assert not drops["hidden"] and f"{len(dropped_by_length)} rows dropped" in drops["title"]
    assert len(drops["rows"]) == len(dropped_by_length)
    assert dropped_by_length[0]["record"]["instruction"] in drops["rows"][0]
    (tmp_path / "report.png").write_bytes(visit.screenshot)
    colours, inked = colour_stats(visit.screenshot)
    assert colours > 40 and inked > 0.05, (colours, inked)  # charts, not a blank or text-only page


def test_a_long_run_of_many_rounds_draws_without_errors(fake_run, browser_ready, tmp_path: Path) -> None:
    import shutil

    run_dir, _ = fake_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    rounds = [
        {"round": i, "requests": 64, "candidates": 500 + i, "accepted": 300, "acceptance": 0.6} for i in range(400)
    ]
    (copy / "rounds.json").write_text(json.dumps({"stop_reason": "target reached", "rounds": rounds}))
    assert main(["report", str(copy), "--out", str(tmp_path / "r.html")]) == 0
    visit = open_page(tmp_path / "r.html", {"rows": "document.querySelectorAll('#rounds-table tbody tr').length"})
    assert visit.errors == []  # bars of 400 rounds in 640 px: no negative widths
    assert visit.values["rows"] == 400


def test_the_report_is_pushed_with_the_dataset(fake_run, hub) -> None:
    run_dir, _ = fake_run
    result = push_dataset(run_dir, "alice/reported")
    assert "report.html" in result.uploaded
    files = hub.state.repos[("dataset", "alice/reported")].resolve("main").files
    assert files["report.html"].data == (run_dir / "dataset" / "report.html").read_bytes()


def test_a_duplicate_drop_names_its_kept_twin(browser_ready, tmp_path: Path) -> None:
    with fake_in_thread() as server:  # no variants: the echoed instructions repeat, exact_dedup drops the copies
        settings = fake_settings(
            tmp_path / "run",
            server.url,
            generation={"num_instructions": 10, "instances": "response"},
            filters={"instructions": [{"name": "exact_dedup"}], "records": [{"name": "truncated"}]},
            report={"enabled": True},
        )
        generate(parse_config(settings), progress=False)
    rejected = [json.loads(line) for line in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    kept = {json.loads(line)["instruction"] for line in (tmp_path / "run" / "kept.jsonl").read_text().splitlines()}
    duplicates = [r for r in rejected if r["reason"] == "exact_duplicate"]
    assert duplicates
    visit = open_page(
        tmp_path / "run" / "dataset" / "report.html", {"drops": _click_reason("exact_dedup", "exact_duplicate")}
    )
    assert visit.errors == []
    first = visit.values["drops"]["rows"][0]
    twin = first.split("kept twin: ", 1)[1].split("kept_id:", 1)[0]
    assert twin in kept and twin == duplicates[0]["record"]["instruction"]  # an exact copy of a kept row
    assert duplicates[0]["kept_id"] in first


def test_report_of_any_dataset_file_from_the_command(browser_ready, tmp_path: Path, capsys) -> None:
    hostile = "Close the page </script><script>document.title='owned'</script> <!-- and <b>bold</b>"
    rows = [{"instruction": f"Write a poem about topic {i}.", "input": "", "output": f"Poem {i}."} for i in range(30)]
    rows.append({"instruction": hostile, "input": "", "output": "no"})
    data = tmp_path / "alpaca.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "alpaca.html"
    assert main(["report", "--dataset", str(data), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    visit = open_page(
        out,
        {
            "title": "document.title",
            "texts": "[...document.querySelectorAll('#ex-table tbody tr td:nth-child(2)')].map(td => td.textContent)",
            "funnel": "document.querySelector('#funnel-table') === null",
        },
    )
    assert visit.errors == [] and visit.network == []
    assert visit.values["title"].startswith("instructforge report")
    assert hostile in visit.values["texts"]  # shown as text, not run
    assert visit.values["funnel"] is True  # a plain file has no funnel


def test_report_needs_a_run_dir_or_a_dataset(capsys) -> None:
    assert main(["report"]) != 0
    assert "RUN_DIR or --dataset" in capsys.readouterr().err


def test_decontaminate_writes_a_report_whose_drops_name_the_matched_item(browser_ready, tmp_path: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    leak = "Name the largest moon of Saturn and say why it has a thick atmosphere today."
    bench.write_text(json.dumps({"instruction": leak, "input": "", "output": "Titan"}) + "\n")
    data = tmp_path / "data.jsonl"
    rows = [
        {"instruction": f"Describe city number {i} in two sentences.", "input": "", "output": "ok"} for i in range(12)
    ]
    rows.append({"instruction": leak, "input": "", "output": "Titan."})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = decontaminate([data], [str(bench)], tmp_path / "out", ngram=8, threshold=None)
    report = tmp_path / "out" / "dataset" / "report.html"
    assert result.summary().splitlines()[-1] == f"report: {report}"
    funnel = json.loads((tmp_path / "out" / "funnel.json").read_text())
    [(stage, reasons)] = funnel["drops"].items()
    [reason] = reasons
    visit = open_page(report, {"funnel": FUNNEL_JS, "drops": _click_reason(stage, reason)})
    assert visit.errors == [] and visit.network == []
    assert visit.values["funnel"]["rows"] == [[stage, reason, 1]]
    [shown] = visit.values["drops"]["rows"]
    assert leak in shown and "Titan" in shown  # the dropped row, and the benchmark item it matched


@pytest.mark.vllm
def test_the_report_of_a_real_run_opens_offline_with_its_funnel(default_run, browser_ready) -> None:
    real_run = default_run[1].run_dir  # the session's real run of configs/default.yaml (tests/conftest.py)
    funnel = json.loads((real_run / "funnel.json").read_text())
    rounds = json.loads((real_run / "rounds.json").read_text())["rounds"]
    visit = open_page(
        real_run / "dataset" / "report.html",
        {
            "funnel": FUNNEL_JS,
            "rounds": "document.querySelectorAll('#rounds-table tbody tr').length",
            "examples": "document.querySelectorAll('#ex-table tbody tr').length",
            "points": "document.querySelectorAll('#map circle').length",
        },
    )
    assert visit.errors == []
    assert visit.network == []
    shown = visit.values["funnel"]
    assert (shown["candidates"], shown["kept"]) == (funnel["candidates"], funnel["kept"])
    assert sorted(shown["rows"]) == sorted(
        [s, r, n] for s, reasons in funnel["drops"].items() for r, n in reasons.items()
    )
    assert visit.values["rounds"] == len(rounds)
    assert visit.values["examples"] == min(50, funnel["kept"])  # the first page of the table
    assert visit.values["points"] == funnel["kept"]  # every kept row is on the map (under the sample size)
    colours, inked = colour_stats(visit.screenshot)
    assert colours > 40 and inked > 0.05, (colours, inked)


@pytest.mark.parametrize(
    ("values", "kwargs"),
    [
        ([1, 2, 2, 3, 50, 400], {"bins": 5, "integer": True}),  # a long tail lands in the last bin
        ([0.1, 0.5, 0.99, 1.0], {"bins": 4, "lo": 0.0, "hi": 1.0}),
        ([7] * 10, {"bins": 30, "integer": True}),
    ],
    ids=["tail", "unit-interval", "constant"],
)
def test_histograms_count_every_value_once(values, kwargs) -> None:
    from generator.report.build import histogram

    h = histogram(values, kwargs.pop("bins"), **kwargs)
    assert sum(h["counts"]) == len(values) == h["n"]
    assert len(h["edges"]) == len(h["counts"]) + 1
    assert h["max"] == max(values)


def test_a_reason_without_rejected_rows_shows_the_funnel_examples(tmp_path: Path) -> None:
    from generator.report.build import funnel_view
    from generator.report.sources import ReportInputs

    funnel = {
        "candidates": 3,
        "kept": 1,
        "drops": {"parse": {"unparseable": 1}, "length": {"too_short": 1}},
        "examples": {"parse/unparseable": [{"instruction": "{broken", "input": "", "output": "", "error": "json"}]},
    }
    rejected = {"length/too_short": [{"instruction": "Hi", "input": "", "output": "", "detail": {"words": 1}}]}
    view = funnel_view(ReportInputs("t", [{"id": "x", "instruction": "Kept one."}], funnel=funnel, rejected=rejected))
    reasons = {(s["stage"], r["reason"]): r for s in view["stages"] for r in s["reasons"]}
    assert reasons[("parse", "unparseable")]["source"] == "funnel.json examples"
    assert reasons[("parse", "unparseable")]["rows"][0]["detail"] == {"error": "json"}
    assert reasons[("length", "too_short")]["source"] == "rejected.jsonl"


def test_a_dataset_larger_than_max_rows_is_measured_on_an_even_sample() -> None:
    from generator.config import ReportConfig
    from generator.core.records import Record
    from generator.report import measure_records

    records = [Record(instruction=f"Write a short poem about topic number {i}.", output="A poem.") for i in range(2500)]
    measured = measure_records(records, (), ReportConfig(max_rows=1000, sample=100))
    assert measured is not None
    # Every third row (2,500 / 1,000 rounded up), from the first: 834 rows, in order.
    assert len(measured.rows) == measured.metrics.rows == 834
    assert [r["instruction"] for r in measured.rows[:2]] == [records[0].instruction, records[3].instruction]
    small = measure_records(records[:900], (), ReportConfig(max_rows=1000, sample=100))
    assert small is not None and len(small.rows) == 900


def test_measures_are_kept_for_the_same_rows_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun that keeps the same rows reads their measures back (no encoder, no map), as they
    were; other rows, other settings, or an unreadable file measure again."""
    import generator.report.build as build
    from generator.config import ReportConfig
    from generator.core.records import Record
    from generator.report.metrics import DatasetMetrics

    measured: list[int] = []

    def measure_rows(rows: list, seeds: list, config: ReportConfig, vectors: object) -> DatasetMetrics:
        measured.append(len(rows))
        return DatasetMetrics(
            rows=len(rows), sampled=len(rows), vendi=1.5, mean_pairwise_distance=0.4, distinct_1=0.5,
            distinct_2=0.7, self_bleu=0.1, verbs=[("write", "poem", 2)], verb_coverage=1.0,
            nearest_seed=[0.3, 0.2], nearest_seed_median=0.25, lengths={"instruction": [7, 7]},
            share_with_input=0.0, task_types={"generation": 2}, clusters=[0, 1],
            projection=[(0.5, -1.0), (2.0, 3.0)], sample_index=[0, 1], seconds={"map": 6.5},
            root_verbs=[("write", 2)], encoder="all-MiniLM-L6-v2", projection_method="tsne",
        )  # fmt: skip

    monkeypatch.setattr(build, "measure_rows", measure_rows)
    cache = tmp_path / "state" / "report_measures.json"
    records = [Record(instruction=f"Write a short poem about topic {i}.", output="A poem.") for i in range(2)]
    first = build.measure_records(records, ["a seed"], ReportConfig(), cache=cache)
    again = build.measure_records(records, ["a seed"], ReportConfig(), cache=cache)
    assert first is not None and again is not None
    assert measured == [2] and again.metrics == first.metrics  # tuples come back as tuples
    assert again.rows == first.rows and again.card() == first.card()

    build.measure_records(records[:1], ["a seed"], ReportConfig(), cache=cache)  # other rows
    build.measure_records(records[:1], ["a seed"], ReportConfig(sample=500), cache=cache)  # other settings
    cache.write_text("{")
    build.measure_records(records[:1], ["a seed"], ReportConfig(sample=500), cache=cache)
    assert measured == [2, 1, 1, 1]


SOURCES = {
    "documents": [
        {"document": "guide.md", "sha256": "a" * 64, "chunks": 4, "asked": 4, "used": 3, "rows": 6},
        {"document": "manual.pdf", "sha256": "b" * 64, "chunks": 10, "asked": 6, "used": 5, "rows": 9},
        {"document": "notes.txt", "sha256": "c" * 64, "chunks": 2, "asked": 2, "used": 0, "rows": 0},
    ],
    "skipped": [{"document": "scan.pdf", "reason": "no_text"}],
    "chunks": 16,
    "chunks_used": 8,
    "covered": 0.5,
    "unused": ["notes.txt"],
}


def test_a_documents_runs_sources_section_shows_each_documents_coverage(tmp_path: Path) -> None:
    from generator.config import ReportConfig
    from generator.report.build import Hardware, measure_rows, sources_view, view_data
    from generator.report.html import render
    from generator.report.sources import read_folder

    assert sources_view(None) is None  # not a documents run: no section
    view = sources_view(SOURCES)
    assert [(d["document"], d["rows"], d["covered"]) for d in view["documents"]] == [
        ("manual.pdf", 9, 0.5),  # most rows first
        ("guide.md", 6, 0.75),
        ("notes.txt", 0, 0.0),
    ]
    assert view["rows"] == 15 and view["unused"] == ["notes.txt"]

    (tmp_path / "sources.json").write_text(json.dumps(SOURCES))
    rows = [
        {"id": str(i), "instruction": f"Explain point {i}.", "input": "", "output": "It.", "meta": {}} for i in range(3)
    ]
    inputs = read_folder(tmp_path, rows=rows)
    assert inputs.sources == SOURCES
    data = view_data(inputs, measure_rows(rows), ReportConfig(), Hardware())
    page = render(data)
    assert 'id="sources-table"' in page and 'href="#sources"' in page
    assert "Nothing came from 1 document" in page and "scan.pdf (no_text)" in page
    assert "9 (60.0%)" in page  # manual.pdf's rows kept, as a share of all rows


def test_a_run_without_sources_has_no_sources_section(tmp_path: Path) -> None:
    from generator.config import ReportConfig
    from generator.report.build import Hardware, measure_rows, view_data
    from generator.report.html import render
    from generator.report.sources import read_folder

    rows = [
        {"id": str(i), "instruction": f"Explain point {i}.", "input": "", "output": "It.", "meta": {}} for i in range(3)
    ]
    data = view_data(read_folder(tmp_path, rows=rows), measure_rows(rows), ReportConfig(), Hardware())
    assert data["sources"] is None and 'id="sources"' not in render(data)
