"""`dedup` and `decontaminate` over finished data: any files the reader knows in, a dataset folder out.

Each writes a run-like directory, so that `export`, `push` and `load_dataset` take its output as they
take a run's:

    <out>/dataset/          parquet + card, as `generate` writes it
    <out>/funnel.json       rows in, dropped per filter and reason, kept
    <out>/rejected.jsonl    every dropped row with the filter's detail (decontaminate)
    <out>/kept.jsonl, <out>/dedup_report.json                  (dedup, as before)
    <out>/decontamination.json   per reference: rows caught by n-gram and by similarity, each with
                                 the matched reference text and score (decontaminate)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filters.base import Chain, Funnel
from generator import __version__
from generator.config import DatasetConfig, ReportConfig
from generator.core.errors import ConfigError
from generator.core.files import atomic_open
from generator.core.records import Record
from generator.publish.dataset import REPORT, DatasetInfo
from generator.report import measure_records

DATASET = "dataset"
FUNNEL = "funnel.json"
REJECTED = "rejected.jsonl"
DECONTAMINATION = "decontamination.json"


def folder_info(records: list[Record], sources: list[str]) -> DatasetInfo:
    """What the card of an offline step's dataset says (the default dataset settings); `write_folder`
    adds the funnel and the report's numbers."""
    d = DatasetConfig()
    models = sorted({str(r.meta["model"]) for r in records if r.meta.get("model")})
    return DatasetInfo(
        name=d.name,
        pretty_name=d.pretty_name,
        license=d.license,
        languages=list(d.languages),
        model=", ".join(models) or "unknown",
        method="unknown",
        templates=sorted({str(r.meta.get("template") or "") for r in records} - {""}),
        seed_source=", ".join(sources),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=__version__,
        repo_id=d.push.repo if d.push else None,
    )


def write_folder(
    records: list[Record] | dict[str, list[Record]],
    out_dir: Path,
    info: DatasetInfo,
    funnel: Funnel,
    report: ReportConfig | None = None,
) -> Path:
    """The kept records as `<out_dir>/dataset` (parquet + card, the default dataset settings; the
    given splits when `records` is a dict of them), the funnel as `funnel.json`, and the report
    (`dataset/report.html`; none when `report` turns it off, `ReportConfig()` when None)."""
    from generator.publish.dataset import write_dataset

    splits = records
    records = [r for rs in records.values() for r in rs] if isinstance(records, dict) else records
    d = DatasetConfig()
    info.funnel = funnel.to_dict()
    measured = measure_records(records, (), report or ReportConfig())
    info.quality = measured.card() if measured else None
    template = Path(d.card_template) if d.card_template else None
    path = write_dataset(
        splits,
        out_dir / DATASET,
        info,
        test_ratio=d.test_ratio,
        split_seed=d.split_seed,
        card_template=template,
        save_to_disk=d.save_to_disk,
    )
    funnel.write(out_dir / FUNNEL)
    if measured is not None:
        measured.write(out_dir)
    return path


# --- dedup ------------------------------------------------------------------------------------------


@dataclass
class CleanResult:
    """What an offline step read, kept and dropped, and where it wrote them."""

    out_dir: Path
    funnel: Funnel
    summary_line: str
    written: list[Path] = field(default_factory=list)

    @property
    def dataset_dir(self) -> Path:
        return self.out_dir / DATASET

    def summary(self) -> str:
        report = self.dataset_dir / REPORT
        lines = [self.summary_line, f"wrote {', '.join(str(p) for p in self.written)}"]
        return "\n".join([*lines, *([f"report: {report}"] if report.is_file() else [])])


def dedup(
    inputs: list[Path],
    out_dir: Path,
    *,
    format: str | None = None,
    report: ReportConfig | None = None,
    **params: Any,
) -> CleanResult:
    """`filters.dedup.dedup_files` (kept.jsonl, dedup_report.json, dedup_index/), then the dataset
    folder of the kept rows and its report (`report`, as `write_folder` takes it); `params` go to
    `dedup_files` (threshold, encoder, model, semantic, pair_check, cascade), but `columns`, the
    inputs' column map, `against` (a path: an existing corpus, index or dataset, the rows are judged
    against) and `reuse` (a path: an index whose vectors are reused)."""
    from filters.dedup import dedup_files, index_folder, load_index, open_corpus
    from generator.core import readers

    out_dir = Path(out_dir)
    columns = params.pop("columns", None)
    split_records = readers.read_split_records(inputs, format=format, columns=columns, what="dedup input")
    if params.get("against") is not None:
        params["against"] = open_corpus(params["against"], format=format, columns=columns)
    if params.get("reuse") is not None:
        folder = index_folder(params["reuse"])
        if folder is None:
            raise ConfigError(
                f"dedup --reuse: no dedup index at {params['reuse']} (expected a dedup output folder, its "
                "dedup_index/ or a run directory)"
            )
        params["reuse"] = load_index(folder)
    split_of = {id(r): split for split, r in split_records}
    try:
        result = dedup_files(inputs, out_dir, records=[r for _, r in split_records], **params)
    except ValueError as err:  # a setting the filter itself refuses (an unfitted pair check, say)
        raise ConfigError(f"dedup: {err}") from None
    funnel = Funnel(candidates=len(result.kept) + len(result.dropped), kept=len(result.kept))
    for d in result.dropped:
        funnel.drops["dedup"][d.reason] += 1
    kept_split = {r.id: split_of[id(r)] for r in result.kept}
    across = sum(kept_split.get(d.kept_id, split_of[id(d.record)]) != split_of[id(d.record)] for d in result.dropped)
    line = result.summary() + (
        f"; {across} of the dropped rows duplicate a row of an earlier split (the earlier split's row is kept)"
        if across
        else ""
    )
    kept = by_split(result.kept, split_of)
    info = folder_info(result.kept, [str(p) for p in inputs])
    path = write_folder(kept, out_dir, info, funnel, report)
    return CleanResult(out_dir, funnel, line, [out_dir / "kept.jsonl", out_dir / "dedup_report.json", path])


def by_split(records: list[Record], split_of: dict[int, str]) -> list[Record] | dict[str, list[Record]]:
    """The kept records of each input split, in order; a plain list when the inputs had one split
    (the dataset then splits them as `generate` does)."""
    splits: dict[str, list[Record]] = {name: [] for name in dict.fromkeys(split_of.values())}
    for r in records:
        splits[split_of[id(r)]].append(r)
    return records if len(splits) <= 1 else splits


# --- decontaminate ---------------------------------------------------------------------------------


def decontaminate(
    inputs: list[str | Path],
    references: list[str],
    out_dir: Path,
    *,
    format: str | None = None,
    report: ReportConfig | None = None,
    **params: Any,
) -> CleanResult:
    """Drop the rows of `inputs` that leak a reference (filters/decontam.py), keep the rest in order,
    and write them with their report (`report`, as `write_folder` takes it). `params` are the
    filter's (ngram, threshold, encoder, model), checked by its spec, `columns`, the inputs' column
    map, and `embedder`, an `Embedder` that replaces the encoder (as `dedup_files` takes one).
    References are read (and a bad one refused) before anything is written."""
    from filters.decontam import Decontaminate
    from filters.specs import parse_specs
    from generator.core import readers

    columns, embedder = params.pop("columns", None), params.pop("embedder", None)

    [spec] = parse_specs(
        [{"name": "decontaminate", "references": [str(r) for r in references], **params}],
        where="decontaminate",
    )
    try:
        flt = Decontaminate(**spec.params(), embedder=embedder, where="decontaminate")
    except ValueError as err:
        raise ConfigError(f"decontaminate: {err}") from None
    split_records = readers.read_split_records(inputs, format=format, columns=columns, what="input")
    split_of = {id(r): split for split, r in split_records}
    records = [r for _, r in split_records]
    if not records:
        raise ConfigError(f"decontaminate: the inputs {', '.join(map(str, inputs))} hold no rows")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REJECTED).unlink(missing_ok=True)
    funnel = Funnel()
    result = Chain([flt], funnel, out_dir / REJECTED).run(records)
    caught = {"inputs": [str(p) for p in inputs], "rows": len(records), "kept": len(result.kept), **flt.report()}
    with atomic_open(out_dir / DECONTAMINATION, "w") as f:
        json.dump(caught, f, ensure_ascii=False, indent=2)
    info = folder_info(result.kept, [str(p) for p in inputs])
    info.contamination = flt.counts()
    path = write_folder(by_split(result.kept, split_of), out_dir, info, funnel, report)
    per = ", ".join(
        f"{name}: {c['ngram_overlap']} by n-gram, {c['semantic_overlap']} by similarity"
        for name, c in flt.counts().items()
    )
    line = f"kept {len(result.kept)} of {len(records)} rows (dropped {len(result.dropped)}; {per})"
    return CleanResult(out_dir, funnel, line, [out_dir / DECONTAMINATION, path])
