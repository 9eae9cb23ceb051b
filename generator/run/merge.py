"""`merge`: the shard runs of one job array become one dataset.

Each shard run directory holds its dataset (`dataset/`), its funnel and its fingerprint. The
merge reads the shards' rows in the order given, deduplicates them globally (every duplicate left
is a cross-shard one: each shard already deduplicated itself), and writes a run-like directory:

    <out>/dataset/      parquet + card, as `generate` writes it (push it with `instructforge push`)
    <out>/funnel.json   the shards' funnels added up, plus a `merge` stage for cross-shard drops
    <out>/merge.json    which shards went in and how many rows each gave and lost
    <out>/rejected.jsonl  every record the merge dropped, with the filter's detail
    <out>/state/        the dedup filters' state; semantic_dedup/report.json pairs each drop with
                        its kept twin and their similarity

Each merge starts the dedup afresh (the state of an earlier merge into `<out>` is discarded), so
the result depends only on the shards given and their order.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filters.base import Chain, FilterContext, Funnel
from filters.registry import build_chain
from filters.specs import parse_specs
from generator import __version__
from generator.config import Config, DatasetConfig
from generator.core.errors import ConfigError
from generator.core.records import Record
from generator.methods.registry import METHODS
from generator.report import measure_records
from generator.run.context import with_defaults
from generator.run.store import engine_totals

MERGE_STAGE = "merge"


def default_dedup() -> list[dict[str, Any]]:
    """Exact dedup, then the FAISS semantic dedup."""
    return [{"name": "exact_dedup"}, {"name": "semantic_dedup"}]


@dataclass
class ShardInput:
    run_dir: Path
    rows: int
    dropped: int = 0  # rows the merge dropped as duplicates of an earlier shard's


@dataclass
class MergeResult:
    out_dir: Path
    dataset_dir: Path
    funnel: Funnel
    shards: list[ShardInput] = field(default_factory=list)
    dedup: list[str] = field(default_factory=list)
    report: Path | None = None

    @property
    def records(self) -> int:
        return self.funnel.kept

    @property
    def cross_shard_duplicates(self) -> int:
        return sum(self.funnel.drops.get(MERGE_STAGE, {}).values())

    def summary(self) -> str:
        rows = sum(s.rows for s in self.shards)
        return "\n".join(
            [
                f"merged {len(self.shards)} shards ({rows} rows) into {self.records} records in {self.dataset_dir}",
                f"  dropped {self.cross_shard_duplicates} cross-shard duplicates ({', '.join(self.dedup)})",
                f"  funnel: {self.funnel.candidates} candidates -> {self.funnel.kept} kept "
                f"({self.out_dir / 'funnel.json'})",
                *([f"report: {self.report}"] if self.report else []),
            ]
        )


def merge_runs(
    run_dirs: list[Path],
    out_dir: Path,
    *,
    config: Config | None = None,
    dedup: list[dict[str, Any]] | None = None,
    push: bool = False,
) -> MergeResult:
    """Merge shard run directories into `out_dir` (see the module docstring).

    `config` gives the split, card and push settings (its `dataset` section) and the report written
    beside the dataset (its `report` section); the defaults when None. `dedup` the filter specs run
    over all rows, `default_dedup()` when None. `push` pushes the merged dataset to `dataset.push.repo`.
    """
    from generator.publish.dataset import write_dataset

    config = config or Config()
    d, report = config.dataset, config.report
    if push and d.push is None:
        raise ConfigError(
            "merge was asked to push, but the config has no dataset.push.repo; "
            "add `dataset: {push: {repo: user/name}}` to the config"
        )
    run_dirs = [Path(p) for p in run_dirs]
    out_dir = Path(out_dir)
    _check_inputs(run_dirs, out_dir)
    shard_funnel, loaded = _load_shards(run_dirs)

    specs = default_dedup() if dedup is None else dedup
    try:
        filters = build_chain(parse_specs(specs, where="dedup"))
    except ConfigError as err:
        raise ConfigError(f"merge: {err}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    rejected = out_dir / "rejected.jsonl"
    rejected.unlink(missing_ok=True)
    stage = Funnel()
    chain = Chain(filters, stage, rejected)
    kept: list[Record] = []
    shards: list[ShardInput] = []
    try:
        shutil.rmtree(out_dir / "state", ignore_errors=True)
        ctx = FilterContext(state_dir=out_dir / "state")
        for flt in filters:
            flt.setup(ctx)
        # Shard by shard through stateful filters: each shard is checked against everything kept
        # before it, so the drops per shard are known.
        for run_dir, recs in loaded:
            result = chain.run(recs)
            kept += result.kept
            shards.append(ShardInput(run_dir, len(recs), len(result.dropped)))
    finally:
        for flt in filters:
            flt.close()

    funnel = _merged_funnel(shard_funnel, stage)
    info = _info(run_dirs, kept, funnel.to_dict(), d)
    measured = measure_records(kept, (), report)
    info.quality = measured.card() if measured else None
    template = Path(d.card_template) if d.card_template else None
    dataset_dir = write_dataset(
        kept,
        out_dir / "dataset",
        info,
        test_ratio=d.test_ratio,
        split_seed=d.split_seed,
        card_template=template,
        save_to_disk=d.save_to_disk,
    )
    funnel.write(out_dir / "funnel.json")
    report_file = measured.write(out_dir).path if measured else None
    (out_dir / "merge.json").write_text(
        json.dumps(
            {
                "dedup": specs,
                "shards": [{"run_dir": str(s.run_dir), "rows": s.rows, "dropped": s.dropped} for s in shards],
                "kept": funnel.kept,
            },
            indent=2,
        )
    )
    if push and d.push is not None:  # checked above: push needs dataset.push
        from generator.publish.hub import push_dataset

        push_dataset(
            dataset_dir,
            d.push.repo,
            private=d.push.private,
            revision=d.push.revision,
            message=f"Merge of {len(shards)} shards: {funnel.kept} records",
        )
    return MergeResult(out_dir, dataset_dir, funnel, shards, [s["name"] for s in specs], report_file)


def _check_inputs(run_dirs: list[Path], out_dir: Path) -> None:
    if not run_dirs:
        raise ConfigError("merge needs at least one shard run directory, got none")
    if any(p.resolve() == out_dir.resolve() for p in run_dirs):
        raise ConfigError(f"merge output {out_dir} is also an input; write the merge to a new directory")
    resolved = [p.resolve() for p in run_dirs]
    twice = sorted({str(p) for p, r in zip(run_dirs, resolved) if resolved.count(r) > 1})
    if twice:
        raise ConfigError(
            f"merge was given the same shard more than once: {', '.join(twice)}; list each shard run directory once"
        )


def _load_shards(run_dirs: list[Path]) -> tuple[Funnel, list[tuple[Path, list[Record]]]]:
    """The shards' funnels added up, and each shard's records, checked against its funnel."""
    from generator.core.readers import read_records

    shard_funnel = Funnel()
    loaded: list[tuple[Path, list[Record]]] = []
    for run_dir in run_dirs:
        funnel_path = run_dir / "funnel.json"
        if not funnel_path.is_file():
            raise ConfigError(
                f"{run_dir} is not a finished run directory: no funnel.json in it; "
                "run `instructforge generate` for this shard first (or leave it out)"
            )
        funnel = Funnel.from_dict(json.loads(funnel_path.read_text(encoding="utf-8")))
        records = read_records([run_dir / "dataset"], format="own", what="shard")
        if len(records) != funnel.kept:
            raise ConfigError(
                f"{run_dir}: its dataset holds {len(records)} rows but its funnel.json says "
                f"{funnel.kept} were kept; run `instructforge generate` for it again"
            )
        shard_funnel.merge(funnel)
        loaded.append((run_dir, records))
    return shard_funnel, loaded


def _merged_funnel(shards: Funnel, stage: Funnel) -> Funnel:
    """The shards' funnels with the merge's drops as one more stage, `merge`, by reason: candidates
    stay what the shards took in, kept is what the merge kept, so candidates = kept + dropped."""
    out = Funnel(candidates=shards.candidates, kept=stage.kept)
    out.merge_drops(shards)
    for name, reasons in stage.drops.items():
        out.drops[MERGE_STAGE].update(reasons)
        for reason in reasons:
            out.examples[f"{MERGE_STAGE}/{reason}"].extend(stage.examples.get(f"{name}/{reason}", []))
    return out


def _info(run_dirs: list[Path], records: list[Record], funnel: dict[str, Any], d: DatasetConfig) -> Any:
    """The card's facts, from the first shard's fingerprint and every shard's engine accounting."""
    from generator.publish.dataset import DatasetInfo

    fp_path = run_dirs[0] / "fingerprint.json"
    fp = with_defaults(json.loads(fp_path.read_text(encoding="utf-8"))) if fp_path.is_file() else {}
    models = sorted({str(r.meta["model"]) for r in records if r.meta.get("model")})
    gen = fp.get("generation", {})
    sampling = dict(fp.get("sampling", {}))
    sampling.pop("seed", None)  # differs per shard
    engine: dict[str, Any] = {"shards": len(run_dirs)}
    for run_dir in run_dirs:
        totals = engine_totals(run_dir)
        for key in ("requests", "prompt_tokens", "completion_tokens") if totals else ():
            engine[key] = engine.get(key, 0) + int(totals[key])
    model_cfg = fp.get("model", {})
    return DatasetInfo(
        name=d.name,
        pretty_name=d.pretty_name,
        license=d.license,
        languages=list(d.languages),
        model=", ".join(models) or str(model_cfg.get("name", "unknown")),
        model_revision=model_cfg.get("revision"),
        method=gen.get("method", "self_instruct"),
        preferences=gen.get("preferences"),
        templates=sorted({r.meta.get("template", "") for r in records} - {""}),
        sampling=sampling,
        seed_source=_starts_from(gen),
        funnel=funnel,
        engine=engine,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=__version__,
        repo_id=d.push.repo if d.push else None,
    )


def _starts_from(generation: dict[str, Any]) -> str:
    """The card's "seed tasks" row: the seeds, or what the shards' method starts from instead."""
    method = METHODS.get(str(generation.get("method", "self_instruct")))
    return (method.starts_from if method else None) or str(generation.get("seeds", "builtin"))
