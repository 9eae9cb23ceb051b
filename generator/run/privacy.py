"""A run's private sources: which texts they are, the `privacy` filter built on them, the masking of
every text the run shows outside its directory (rejected rows, funnel examples, report, card), the
audit written at the end (`privacy.json`), and `scrub`.

Private text stays in the run directory only where a resume needs it (the results store, the
filters' state); with privacy on the directory is made readable by its owner alone (0700, files
0600), and `instructforge scrub RUN_DIR` removes those copies once the run is done.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters.privacy import PrivacyAudit, PrivateSet, audit, row_fields
from filters.specs import PrivacySettings
from generator.config import PrivacyConfig
from generator.core import readers
from generator.core.errors import ConfigError
from generator.core.files import atomic_open, write_json

PRIVACY = "privacy.json"
KGRAMS = "privacy_kgrams.npy"  # the private records' 8-gram hashes (no text): a later report masks with them

Mask = Callable[[Any], Any]


def seed_text(seed: Any) -> str:
    """A seed task as one private record: its instruction, then each instance's input and output."""
    parts = [seed.instruction]
    for inst in seed.instances:
        parts += [inst.input, inst.output]
    return "\n".join(p for p in parts if p)


def read_private(specs: Sequence[str], base_dir: Path, where: str) -> list[str]:
    """The records of private sources, each as one text (its fields joined)."""
    out: list[str] = []
    for i, spec in enumerate(specs):
        try:
            for row in readers.read_rows(spec, base_dir=base_dir, what="private source"):
                out.append("\n".join(row_fields(row.to_record())))
        except ConfigError as err:
            raise ConfigError(f"{where}[{i}]: {err}") from None
    return [t for t in out if t.strip()]


def private_texts(config: PrivacyConfig, seeds: Iterable[Any], chunks: Iterable[Any], base_dir: Path) -> list[str]:
    """Every private record of a run: the seeds and document chunks when marked, and `sources`."""
    texts = [seed_text(s) for s in seeds] if config.seeds else []
    if config.documents:
        texts += [c.text for c in chunks]
    return texts + read_private(config.sources, base_dir, "privacy.sources")


def open_private(
    config: PrivacyConfig, seeds: Iterable[Any], chunks: Iterable[Any], base_dir: Path
) -> PrivateSet | None:
    """The run's private set (None when nothing is marked private), read before any server starts."""
    if not config.enabled:
        return None
    texts = private_texts(config, seeds, chunks, base_dir)
    if not texts:
        raise ConfigError("privacy: the sources marked private hold no text; unmark them or name other sources")
    holdout = read_private(config.holdout, base_dir, "privacy.holdout") if config.holdout else None
    return PrivateSet(texts, holdout, config)  # the section is the audit's settings, sources added


def masker(private: PrivateSet | None) -> Mask | None:
    """A function that masks every private span (8 words or more) in any string of a JSON-like value."""
    return None if private is None else private.spans.masker.mask_all


def folder_mask(folder: Path) -> Mask | None:
    """The mask of a run directory with private sources, from its k-gram hashes; None without."""
    from filters.spans import KgramMask

    path = Path(folder) / KGRAMS
    return KgramMask.load(path).mask_all if path.is_file() else None


def lock_down(run_dir: Path, private: PrivateSet | None = None) -> None:
    """Only the owner may read a run directory that holds private text; `private`'s k-gram hashes
    are kept beside it, for reports written later (`instructforge report RUN_DIR`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if private is not None:
        private.spans.masker.save(run_dir / KGRAMS)
    os.chmod(run_dir, 0o700)
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o600)


def write_audit(run_dir: Path, records: Sequence[Any], private: PrivateSet) -> PrivacyAudit:
    """The audit of the rows a run keeps, written to privacy.json."""
    result = audit(records, [], private_set=private)
    write_json(run_dir / PRIVACY, result.to_dict(), indent=2, ensure_ascii=False)
    return result


@dataclass
class AuditRun:
    """What `instructforge audit` did: the audit, and where it wrote privacy.json."""

    result: PrivacyAudit
    path: Path
    report: Path | None = None

    @property
    def passed(self) -> bool:
        return not self.result.crossed

    def summary(self) -> str:
        d = self.result.to_dict()
        near, ids, attack = d["near"], self.result.identifiers, d["membership_attack"]
        lines = [
            f"audited {d['rows']:,} rows against {d['private_records']:,} private records "
            f"({d['holdout_records']:,} held out: {d['holdout']}; encoder {d['encoder']})",
            f"  verbatim: {d['verbatim']['rows_sharing_8_words']:,} rows share 8+ words with a private record, "
            f"{d['verbatim']['rows_over_limit']:,} over the limit; longest {d['verbatim']['max_words']} words",
            f"  near copies: {near['rows_over_similarity']:,} rows at cosine >= {self.result.settings.max_similarity}; "
            f"closer than the holdout's 5th percentile: {_share(near['closer_than_holdout_p5'])}",
            "  identifiers: "
            + (", ".join(f"{k} {c['leaked']} leaked / {c['invented']} invented" for k, c in ids.items()) or "none"),
            f"  membership attack AUC: {_value(attack['auc'])} ({attack['note']})",
            f"wrote {self.path}" + (f" and {self.report}" if self.report else ""),
        ]
        lines += [f"FAILED: {c}" for c in self.result.crossed] or ["passed: no threshold crossed"]
        return "\n".join(lines)


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def audit_dataset(  # noqa: PLR0913 - the command's inputs, one keyword each
    inputs: Sequence[str],
    private: Sequence[str],
    out: Path,
    *,
    holdout: Sequence[str] | None = None,
    settings: PrivacySettings | None = None,
    report: bool = True,
) -> AuditRun:
    """Audit any dataset the readers know against private sources; privacy.json goes into `out`."""
    records = []
    for i, source in enumerate(inputs):
        try:
            records += [row.to_record() for row in readers.read_rows(source, what="dataset")]
        except ConfigError as err:
            raise ConfigError(f"DATA[{i}]: {err}") from None
    if not records:
        raise ConfigError(f"{', '.join(inputs)}: no rows to audit")
    texts = read_private(private, Path.cwd(), "--private")
    if not texts:
        raise ConfigError(f"--private {' '.join(private)}: no text in these sources")
    held = read_private(holdout, Path.cwd(), "--holdout") if holdout else None
    result = audit(records, texts, held, settings)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PRIVACY
    write_json(path, result.to_dict(), indent=2, ensure_ascii=False)
    run = AuditRun(result, path)
    if report and len(inputs) == 1:  # the dataset's report with its Privacy section, private text masked
        from generator.report.build import write_dataset_report

        run.report = write_dataset_report(
            inputs[0], out / "report.html", privacy=result.to_dict(), mask=masker(result.private_set)
        ).path
    return run


PASSAGE_KEYS = ("text",)  # meta.source keys that hold a document's passage (the documents method)


@dataclass
class Scrubbed:
    """What `scrub` removed from a run directory."""

    run_dir: Path
    removed: list[str]
    rows: int  # dataset rows whose meta held a passage

    def summary(self) -> str:
        gone = ", ".join(self.removed) or "nothing (already scrubbed)"
        return (
            f"scrubbed {self.run_dir}: removed {gone}; {self.rows:,} dataset rows lost their passage "
            "(meta.source.text); the run can no longer be resumed"
        )


def scrub(run_dir: Path) -> Scrubbed:
    """Remove every copy of private text a finished run keeps: the results store (prompts quote seeds
    and passages), the filters' state, and the passages in the dataset's `meta.source`; the dataset
    stays loadable. What is left shows private text only as masked spans and hashes (rejected rows,
    funnel, report, card), or as the short spans the audit allows in kept rows."""
    from generator.run.context import DATASET, STATE
    from generator.run.store import LOCK, RESULTS

    run_dir = Path(run_dir)
    if not (run_dir / "fingerprint.json").is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no fingerprint.json in it)")
    _not_in_use(run_dir / LOCK)
    removed = []
    for name in (RESULTS, STATE):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(f"{name}/")
        elif path.exists():
            path.unlink()
            removed.append(name)
    rows = _strip_passages(run_dir / DATASET)
    return Scrubbed(run_dir, removed, rows)


def _strip_passages(dataset: Path) -> int:
    """Drop the passages from every shard's `meta.extra` (JSON) and from the `save_to_disk` copy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from generator.publish.dataset import DATA_DIR, DISK_DIR

    changed = 0
    for shard in sorted((dataset / DATA_DIR).glob("*.parquet")):
        table = pq.read_table(shard)
        rows = table.to_pylist()
        hits = sum(_strip_row(r) for r in rows)
        if hits:
            with atomic_open(shard, "wb") as f:
                pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), f)
            changed += hits
    disk = dataset / DISK_DIR
    if changed and disk.is_dir():
        from datasets import load_from_disk

        loaded = load_from_disk(str(disk))
        scrubbed = loaded.map(_stripped)
        tmp = disk.with_name(disk.name + ".scrub")
        scrubbed.save_to_disk(str(tmp))
        shutil.rmtree(disk)
        tmp.rename(disk)
    return changed


def _not_in_use(lock: Path) -> None:
    """A running generate holds the run's lock (generator/run/store.py): scrubbing under it would
    take its results away."""
    import fcntl

    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"{lock.parent} is in use by a running generate; scrub it when the run is done") from None
    finally:
        os.close(fd)


def _stripped(row: dict[str, Any]) -> dict[str, Any]:
    _strip_row(row)
    return row


def _strip_row(row: dict[str, Any]) -> bool:
    meta = row.get("meta")
    extra = meta.get("extra") if isinstance(meta, dict) else None
    if not extra:
        return False
    data = json.loads(extra)
    source = data.get("source")
    if not isinstance(source, dict) or not any(k in source for k in PASSAGE_KEYS):
        return False
    for key in PASSAGE_KEYS:
        source.pop(key, None)
    meta["extra"] = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    return True
