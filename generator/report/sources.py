"""What a report is made from: the rows of a dataset and, for a run (or a merge, dedup or
decontaminate folder), the files it wrote beside them (funnel, rounds, rejected rows, engine
statistics, fingerprint). Any dataset the readers know works too, with only the rows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.core.errors import ConfigError
from generator.core.records import Record

FUNNEL = "funnel.json"
ROUNDS = "rounds.json"
REJECTED = "rejected.jsonl"
ENGINE = "engine_stats.json"
FINGERPRINT = "fingerprint.json"
SOURCES = "sources.json"  # a documents run's corpus coverage
PROBES = "probes.json"  # `instructforge probe`'s counterfactual probes
DATASET = "dataset"
CLIP = 600  # characters of a text the report shows (the dataset holds the rest)


@dataclass
class ReportInputs:
    title: str
    rows: list[dict[str, Any]]  # id, instruction, input, output, meta (a dict)
    funnel: dict[str, Any] | None = None
    rounds: dict[str, Any] | None = None
    rejected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "filter/reason" -> rows
    engine: dict[str, Any] = field(default_factory=dict)  # summed over the run's sessions
    seeds: list[str] = field(default_factory=list)  # seed instructions
    fingerprint: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Any] | None = None  # a documents run's corpus coverage (generator/documents/coverage.py)
    probes: dict[str, Any] | None = None  # counterfactual probes (generator/report/probes.py), when run
    privacy: dict[str, Any] | None = None  # the privacy audit (privacy.json) of a run with private sources


def record_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [
        {"id": r.id, "instruction": r.instruction, "input": r.input, "output": r.output, "meta": dict(r.meta)}
        for r in records
    ]


def read_folder(
    folder: Path, *, rows: list[dict[str, Any]] | None = None, rejected_per_reason: int = 100
) -> ReportInputs:
    """A run directory (or the output folder of merge, dedup, decontaminate): its dataset's rows
    (unless given) and whatever of the run's files it holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give a run directory (it holds funnel.json and dataset/)")
    dataset = folder / DATASET if (folder / DATASET).is_dir() else folder
    if rows is None:
        from generator.core.readers import read_records

        rows = record_rows(read_records([dataset]))
    fingerprint = _json(folder / FINGERPRINT) or {}
    return ReportInputs(
        title=str(folder),
        rows=rows,
        funnel=_json(folder / FUNNEL),
        rounds=_json(folder / ROUNDS),
        rejected=read_rejected(folder / REJECTED, rejected_per_reason),
        engine=engine_totals(_json(folder / ENGINE) or {}),
        fingerprint=fingerprint,
        sources=_json(folder / SOURCES),
        probes=_json(folder / PROBES),
        privacy=_json(folder / "privacy.json"),
    )


def read_dataset(source: str, *, rejected_per_reason: int = 100) -> ReportInputs:
    """Any source the readers know: a file, a dataset folder, `hf:owner/name`. A run directory
    also brings its funnel and the rest."""
    path = Path(source)
    if path.is_dir() and ((path / FUNNEL).is_file() or (path / DATASET).is_dir()):
        return read_folder(path, rejected_per_reason=rejected_per_reason)
    from generator.core.readers import read_records

    return ReportInputs(title=str(source), rows=record_rows(read_records([source])))


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); run the command that wrote it again") from None


def clip(text: Any, limit: int = CLIP) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def read_rejected(path: Path, per_reason: int) -> dict[str, list[dict[str, Any]]]:
    """The first `per_reason` dropped rows of each filter and reason, read as a stream."""
    out: dict[str, list[dict[str, Any]]] = {}
    if not path.is_file() or per_reason <= 0:
        return out
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: the rest of the file still counts
            key = f"{item.get('filter')}/{item.get('reason')}"
            shown = out.setdefault(key, [])
            if len(shown) < per_reason:
                shown.append(rejected_row(item))
    return out


def rejected_row(item: dict[str, Any]) -> dict[str, Any]:
    """A rejected.jsonl line (or a funnel example) as the report shows it: the texts and the detail."""
    record = item.get("record") or item
    detail = {
        k: v for k, v in item.items() if k not in {"filter", "reason", "record", "instruction", "input", "output"}
    }
    return {
        "instruction": clip(record.get("instruction")),
        "input": clip(record.get("input")),
        "output": clip(record.get("output")),
        "detail": {k: v if isinstance(v, (int, float, bool)) or v is None else clip(v, 300) for k, v in detail.items()},
    }


def engine_totals(stats: dict[str, Any]) -> dict[str, Any]:
    """engine_stats.json's sessions (one per resumed run) added up; a merge's totals as they are."""
    sessions = stats.get("sessions")
    if not isinstance(sessions, list):
        return {k: v for k, v in stats.items() if isinstance(v, (int, float))}
    total: dict[str, Any] = {}
    for s in sessions:
        for key in ("requests", "failed", "retried", "prompt_tokens", "completion_tokens", "elapsed_s"):
            if isinstance(s.get(key), (int, float)):
                total[key] = total.get(key, 0) + s[key]
    total["sessions"] = len(sessions)
    return total
