"""The report of a run or of any dataset: measures the rows, gathers what the run wrote, and
writes one self-contained HTML file (generator/report/html.py renders it).

At the end of `generate`, `merge`, `dedup` and `decontaminate` the rows are measured once
(`measure_rows`), the card gets the headline numbers (`card_quality`) and the report the rest
(`write_report`), as `report.html` in the dataset folder, which is pushed with the dataset.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters.embed import TextVectors
from generator.config import ReportConfig
from generator.core.files import write_atomic, write_json
from generator.publish.dataset import REPORT, elapsed_text
from generator.report.metrics import DatasetMetrics, measure
from generator.report.representation import (
    Representation,
    card_representation,
    measure_representation,
    representation_view,
)
from generator.report.sources import DATASET, ReportInputs, clip, read_dataset, read_folder, rejected_row

LENGTH_BINS = 30
SEED_BINS = 20
SUNBURST_VERBS = 20
SUNBURST_OBJECTS = 4
MAP_TEXT = 160  # characters of an instruction shown when hovering its point


@dataclass
class Hardware:
    """What the engine's wall time is counted on: `kind` (GPU, CPU, or device when unknown) times
    `devices` gives the device-seconds."""

    kind: str = "device"
    devices: int = 1


@dataclass
class ReportResult:
    path: Path
    bytes: int
    seconds: dict[str, float]
    metrics: DatasetMetrics
    representation: Representation | None = None

    def summary(self) -> str:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return f"wrote the report {self.path} ({self.bytes / 1e6:.1f} MB, {self.metrics.rows:,} rows; {steps})"


def measure_rows(
    rows: Sequence[dict[str, Any]],
    seeds: Iterable[str] = (),
    config: ReportConfig | None = None,
    vectors: TextVectors | None = None,
) -> DatasetMetrics:
    config = config or ReportConfig()
    return measure(rows, list(seeds), sample=config.sample, vectors=vectors)


def card_quality(
    metrics: DatasetMetrics, report: str = REPORT, representation: Representation | None = None
) -> dict[str, Any]:
    """The card's "Quality and diversity" numbers, its "Bias and representation" ones (under
    `representation`, none when not measured) and the report's file name."""
    verbs: Counter[str] = Counter()
    for verb, _, count in metrics.verbs:
        verbs[verb] += count
    return {
        "rows": metrics.rows,
        "sampled": metrics.sampled,
        "vendi": metrics.vendi,
        "distinct_1": metrics.distinct_1,
        "distinct_2": metrics.distinct_2,
        "self_bleu": metrics.self_bleu,
        "top_verbs": [v for v, _ in verbs.most_common(5)],
        "nearest_seed_median": metrics.nearest_seed_median,
        "report": report,
        "representation": card_representation(representation) if representation is not None else None,
    }


def seed_instructions(seeds: Iterable[Any]) -> list[str]:
    return [s if isinstance(s, str) else str(getattr(s, "instruction", "")) for s in seeds]


def fingerprint_seeds(fingerprint: dict[str, Any]) -> list[str]:
    """The seeds a finished run named, when they can still be read (built-in, or an absolute path)."""
    from generator.core.errors import InstructforgeError
    from generator.prompting.seeds import load_seeds

    if not fingerprint:  # not a run's folder
        return []
    # A fingerprint leaves out what is at its default: `builtin` seeds then.
    source = (fingerprint.get("generation") or {}).get("seeds", "builtin")
    if not source or (source != "builtin" and not Path(str(source)).is_absolute()):
        return []
    try:
        return seed_instructions(load_seeds(source))
    except InstructforgeError:
        return []


def report_path(folder: Path) -> Path:
    folder = Path(folder)
    return (folder / DATASET if (folder / DATASET).is_dir() else folder) / REPORT


def write_folder_report(  # noqa: PLR0913 (keywords, each optional: what a caller already has)
    folder: Path,
    *,
    out: Path | None = None,
    config: ReportConfig | None = None,
    rows: list[dict[str, Any]] | None = None,
    metrics: DatasetMetrics | None = None,
    seeds: Iterable[str] | None = None,
    hardware: Hardware | None = None,
    representation: Representation | None = None,
    mask: Callable[[Any], Any] | None = None,
) -> ReportResult:
    """The report of a run directory (or merge, dedup, decontaminate folder), written to `out`
    (default: report.html in its dataset folder). `rows` and `metrics`, when the caller already
    has them, must be the folder's rows in the order measured."""
    config = config or ReportConfig()
    started = time.perf_counter()
    inputs = read_folder(folder, rows=rows, rejected_per_reason=config.rejected_per_reason)
    inputs.seeds = list(seeds) if seeds is not None else fingerprint_seeds(inputs.fingerprint)
    return _write(
        inputs, out or report_path(folder), config, metrics, hardware or Hardware(), started, representation, mask
    )


def write_dataset_report(
    source: str,
    out: Path,
    *,
    config: ReportConfig | None = None,
    privacy: dict[str, Any] | None = None,
    mask: Callable[[Any], Any] | None = None,
) -> ReportResult:
    """The report of any dataset the readers know (a file, a dataset folder, `hf:owner/name`);
    `privacy` an audit's figures for its Privacy section, `mask` hides private text on the page."""
    config = config or ReportConfig()
    started = time.perf_counter()
    inputs = read_dataset(source, rejected_per_reason=config.rejected_per_reason)
    inputs.seeds = fingerprint_seeds(inputs.fingerprint)
    inputs.privacy = privacy or inputs.privacy
    return _write(inputs, Path(out), config, None, Hardware(), started, mask=mask)


def _write(  # noqa: PLR0913
    inputs: ReportInputs,
    out: Path,
    config: ReportConfig,
    metrics: DatasetMetrics | None,
    hardware: Hardware,
    started: float,
    representation: Representation | None = None,
    mask: Callable[[Any], Any] | None = None,
) -> ReportResult:
    from generator.core.errors import InstructforgeError
    from generator.report.html import render

    if not inputs.rows:
        raise InstructforgeError(f"{inputs.title}: no rows to report on")
    seconds = {"read": time.perf_counter() - started}
    if metrics is None:
        t = time.perf_counter()
        metrics = measure_rows(inputs.rows, inputs.seeds, config)
        seconds["measure"] = time.perf_counter() - t
    if representation is None and config.representation:
        t = time.perf_counter()
        representation = measure_representation(inputs.rows, config.representation_target)
        seconds["representation"] = time.perf_counter() - t
    t = time.perf_counter()
    data = view_data(inputs, metrics, config, hardware)
    data["representation"] = representation_view(representation) if representation is not None else None
    if mask is not None:  # a run with private sources: no private span in the page
        data = mask(data)
    page = render(data).encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page)
    seconds["render"] = time.perf_counter() - t
    return ReportResult(out, len(page), {k: round(v, 3) for k, v in seconds.items()}, metrics, representation)


# --- the data the page draws ----------------------------------------------------------------------


def view_data(inputs: ReportInputs, m: DatasetMetrics, config: ReportConfig, hw: Hardware) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-ready data: small whatever the dataset's size
    (histograms are binned here; the map, the clusters and the examples come from the sample)."""
    from generator import __version__

    return {
        "title": inputs.title,
        "version": __version__,
        "summary": summary(inputs, m, config, hw),
        "funnel": funnel_view(inputs),
        "checks": checks_view(inputs.funnel),
        "diversity": diversity_view(inputs, m),
        "lengths": lengths_view(m),
        "rounds": (inputs.rounds or {}).get("rounds") or [],
        "stop_reason": (inputs.rounds or {}).get("stop_reason"),
        "examples": examples_view(inputs, m, config.examples),
        "sources": sources_view(inputs.sources),
        "representation": None,  # filled by `_write` when measured
        "probes": inputs.probes,
        "evolution": (inputs.sources or {}).get("privacy"),  # a Private Evolution run's privacy.json
        "privacy": inputs.privacy,  # the leakage audit of a run with private sources
    }


def summary(inputs: ReportInputs, m: DatasetMetrics, config: ReportConfig, hw: Hardware) -> list[list[str]]:
    """(label, value) rows: counts, time, tokens, per-row costs."""
    funnel, engine = inputs.funnel or {}, inputs.engine
    kept = funnel.get("kept", m.rows)
    rows = [["rows kept", f"{kept:,}"]]
    if funnel.get("candidates"):
        rows += [
            ["candidates", f"{funnel['candidates']:,}"],
            ["acceptance", f"{100 * kept / funnel['candidates']:.1f}%"],
        ]
    tokens = engine.get("prompt_tokens", 0) + engine.get("completion_tokens", 0)
    elapsed = float(engine.get("elapsed_s") or 0)
    if engine.get("requests"):
        rows.append(["requests", f"{engine['requests']:,}"])
    if tokens:
        rows.append(
            [
                "tokens (prompt + completion)",
                f"{engine.get('prompt_tokens', 0):,} + {engine.get('completion_tokens', 0):,}",
            ]
        )
    if elapsed:
        rows.append(["generation time (engine)", elapsed_text(elapsed)])
    if kept and tokens:
        rows.append(["tokens per kept row", f"{tokens / kept:,.1f}"])
    if kept and elapsed:
        device_s = elapsed * hw.devices
        rows.append([f"{hw.kind}-seconds per kept row", f"{device_s / kept:,.3f} ({hw.devices} × engine wall time)"])
        if config.gpu_hour_cost is not None:
            cost = config.gpu_hour_cost * device_s / 3600 / kept * 1000
            rows.append(["cost per 1,000 kept rows", f"{cost:,.4f} (at {config.gpu_hour_cost:g} per {hw.kind}-hour)"])
    return rows


def funnel_view(inputs: ReportInputs) -> dict[str, Any] | None:
    funnel = inputs.funnel
    if not funnel:
        return None
    examples = funnel.get("examples") or {}
    kept = {row.get("id"): row["instruction"] for row in inputs.rows}
    stages = []
    for stage, reasons in (funnel.get("drops") or {}).items():
        items = []
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            key = f"{stage}/{reason}"
            shown = inputs.rejected.get(key) or [rejected_row(e) for e in examples.get(key, [])]
            source = "rejected.jsonl" if key in inputs.rejected else "funnel.json examples"
            for row in shown:  # a duplicate names its kept twin: show the twin's text when it is in the dataset
                twin = row["detail"].get("kept_id")
                if twin in kept:
                    row["twin"] = clip(kept[twin])
            items.append({"reason": reason, "count": count, "rows": shown, "source": source})
        stages.append({"stage": stage, "reasons": items})
    return {"candidates": funnel.get("candidates", 0), "kept": funnel.get("kept", 0), "stages": stages}


def checks_view(funnel: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per verifiable check (type empty), then one per constraint type it checked."""
    rows = []
    for check, counts in ((funnel or {}).get("checks") or {}).items():
        rows.append({"check": check, "type": "", "checked": counts["checked"], "passed": counts["passed"]})
        for kind, c in (counts.get("types") or {}).items():
            rows.append({"check": check, "type": kind, "checked": c["checked"], "passed": c["passed"]})
    return rows


def sources_view(sources: dict[str, Any] | None) -> dict[str, Any] | None:
    """A documents run's corpus: per document its chunks, those asked about and used, its rows and
    the share of its chunks used (most rows first), and the documents nothing came from."""
    if not sources or "documents" not in sources:
        return None
    documents = [
        {**d, "covered": d["used"] / d["chunks"] if d["chunks"] else 0.0}
        for d in sorted(sources["documents"], key=lambda d: -d["rows"])
    ]
    return {**sources, "documents": documents, "rows": sum(d["rows"] for d in documents)}


def diversity_view(inputs: ReportInputs, m: DatasetMetrics) -> dict[str, Any]:
    by_verb: dict[str, Counter[str]] = {}
    for verb, obj, count in m.verbs:
        by_verb.setdefault(verb, Counter())[obj or "(none)"] += count
    top = sorted(by_verb.items(), key=lambda kv: -sum(kv[1].values()))[:SUNBURST_VERBS]
    sunburst = [
        {"verb": v, "count": sum(objs.values()), "objects": objs.most_common(SUNBURST_OBJECTS)} for v, objs in top
    ]
    shown = sum(o[1] for item in sunburst for o in item["objects"])
    tasks = [_task(inputs.rows[i]) for i in m.sample_index]
    return {
        "scores": [
            ["Vendi score", m.vendi, "effective number of distinct instructions in the sample (1 = all alike)"],
            ["mean pairwise distance", m.mean_pairwise_distance, "1 − cosine, averaged over pairs of the sample"],
            ["distinct-1", m.distinct_1, "unique words / words"],
            ["distinct-2", m.distinct_2, "unique word pairs / word pairs"],
            ["self-BLEU", m.self_bleu, "overlap of each instruction with the others (lower is more diverse)"],
            ["nearest-seed similarity (median)", _round(m.nearest_seed_median), "cosine to the most similar seed task"],
        ],
        "sunburst": sunburst,
        "sunburst_share": shown / m.rows if m.rows else 0,
        "verb_coverage": m.verb_coverage,
        "map": {
            "points": [[round(x, 4), round(y, 4)] for x, y in m.projection],
            "cluster": list(m.clusters),
            "task": tasks,
            "text": [clip(inputs.rows[i]["instruction"], MAP_TEXT) for i in m.sample_index],
        },
        "cluster_sizes": sorted(Counter(m.clusters).items()),
        "nearest_seed": histogram(m.nearest_seed, SEED_BINS, lo=0.0, hi=1.0),
        "sampled": m.sampled,
        "rows": m.rows,
        "seconds": m.seconds,
    }


def lengths_view(m: DatasetMetrics) -> dict[str, Any]:
    hist = {}
    for name, values in m.lengths.items():
        present = [v for v in values if v] if name == "input" else list(values)
        hist[name] = histogram(present, LENGTH_BINS, integer=True)
    return {"hist": hist, "share_with_input": m.share_with_input, "task_types": list(m.task_types.items())}


def histogram(
    values: Sequence[float], bins: int, *, lo: float | None = None, hi: float | None = None, integer: bool = False
) -> dict[str, Any]:
    """Counts per bin; integer data is cut at the 99th percentile (the rest counted in the last bin)."""
    import numpy as np

    if not len(values):
        return {"edges": [], "counts": [], "n": 0}
    arr = np.asarray(values, dtype=float)
    low = float(arr.min()) if lo is None else lo
    high = float(np.percentile(arr, 99)) if hi is None else hi
    if integer:
        width = max(1, int(np.ceil((high - low + 1) / bins)))
        edges = [low + i * width for i in range(int(np.ceil((high - low + 1) / width)) + 1)]
    else:
        edges = list(np.linspace(low, high, bins + 1))
    counts, _ = np.histogram(np.clip(arr, edges[0], edges[-1]), bins=edges)
    stats = {"median": float(np.median(arr)), "mean": float(arr.mean()), "max": float(arr.max())}
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist(), "n": len(arr), **stats}


def examples_view(inputs: ReportInputs, m: DatasetMetrics, limit: int) -> dict[str, Any]:
    """Kept rows for the table: the first `limit` of the measured sample, with their cluster."""
    cluster = dict(zip(m.sample_index, m.clusters))
    chosen = m.sample_index[:limit]
    rows = []
    for i in chosen:
        row = inputs.rows[i]
        meta = row.get("meta") or {}
        rows.append(
            {
                "i": i,
                "instruction": clip(row["instruction"]),
                "input": clip(row["input"]),
                "output": clip(row["output"]),
                "task": _task(row),
                "round": meta.get("round"),
                "cluster": cluster.get(i),
                "lineage": {k: v for k, v in meta.items() if k != "instances"},
            }
        )
    return {"rows": rows, "total": m.rows}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _task(row: dict[str, Any]) -> str:
    return str((row.get("meta") or {}).get("task_type") or "unspecified")


# --- at the end of a command ----------------------------------------------------------------------


@dataclass
class Measured:
    """The rows of a finished dataset, measured once: the card's numbers and the report's."""

    rows: list[dict[str, Any]]
    metrics: DatasetMetrics
    seeds: list[str]
    config: ReportConfig
    representation: Representation | None = None
    mask: Callable[[Any], Any] | None = None  # masks private text in what the page shows

    def card(self) -> dict[str, Any]:
        return card_quality(self.metrics, representation=self.representation)

    def write(self, folder: Path, hardware: Hardware | None = None) -> ReportResult:
        return write_folder_report(
            folder,
            config=self.config,
            rows=self.rows,
            metrics=self.metrics,
            seeds=self.seeds,
            hardware=hardware,
            representation=self.representation,
            mask=self.mask,
        )


def measure_records(
    records: Iterable[Any],
    seeds: Iterable[Any] = (),
    config: ReportConfig | None = None,
    vectors: TextVectors | None = None,
    *,
    cache: Path | None = None,
) -> Measured | None:
    """None when the config turns the report off. `vectors`: the run's, holding the seeds' vectors
    when steering encoded them. `cache`: a file that keeps the measures of these rows, seeds and
    settings, so that measuring them again (a finished run's rerun) reads them instead (the map's
    projection and the encoder are most of a rerun's time)."""
    from generator.report.sources import record_rows

    config = config or ReportConfig()
    if not config.enabled:
        return None
    total = len(records) if isinstance(records, Sized) else None
    step = max(1, -(-total // config.max_rows)) if total else 1  # an even sample of at most max_rows
    rows = record_rows(r for i, r in enumerate(records) if i % step == 0)
    if not rows:
        return None
    seed_texts = seed_instructions(seeds)
    # `metrics.rows` is what was measured: every row, or the even sample of a larger dataset.
    key = _measures_key(rows, seed_texts, config) if cache is not None else ""
    metrics = _cached_metrics(cache, key) if cache is not None else None
    if metrics is None:
        metrics = measure_rows(rows, seed_texts, config, vectors)
        if cache is not None:  # kept for a rerun of the same rows
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, {"key": key, "metrics": metrics.to_dict()})
    representation = measure_representation(rows, config.representation_target) if config.representation else None
    return Measured(rows, metrics, seed_texts, config, representation)


MEASURES_VERSION = 1  # of DatasetMetrics, its encoder and how it is measured: a change makes every cached one stale


def _measures_key(rows: list[dict[str, Any]], seeds: list[str], config: ReportConfig) -> str:
    data = [MEASURES_VERSION, rows, seeds, config.model_dump(mode="json")]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _cached_metrics(cache: Path, key: str) -> DatasetMetrics | None:
    """The measures `cache` keeps under `key`; None when it keeps other ones or none."""
    try:
        data = json.loads(cache.read_text())
        if data.get("key") != key:
            return None
        m = data["metrics"]
        return DatasetMetrics(
            **{
                **m,
                "verbs": [tuple(v) for v in m["verbs"]],
                "projection": [tuple(p) for p in m["projection"]],
                "root_verbs": [tuple(v) for v in m["root_verbs"]],
            }
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def hardware_of(config: Any) -> Hardware:
    """What a run's engine time ran on: the managed server's GPUs, its CPU, or unknown endpoints."""
    server = config.server
    if server.endpoints:
        return Hardware()
    gpu = server.device == "gpu"
    if server.device == "auto":
        from generator.llm.server import has_gpu

        gpu = has_gpu()
    if gpu:
        return Hardware("GPU", server.tensor_parallel_size * server.data_parallel_size)
    return Hardware("CPU", 1)
