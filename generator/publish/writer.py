"""The run's dataset writer: the dataset folder and card from a config, checkpoints, the push."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sized
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filters.base import Funnel
from generator import __version__
from generator.config import Config
from generator.core.records import Record
from generator.llm.model import BUNDLED, BUNDLED_REPO


def log(message: str) -> None:
    print(f"instructforge: {message}", file=sys.stderr, flush=True)


class DatasetWriter:
    """Writes the run's dataset folder (and pushes it when the config says so)."""

    def __init__(self, config: Config, out_dir: Path, starts_from: str | None = None):
        self.config = config
        self.out_dir = out_dir
        self.starts_from = starts_from  # the method's, when it shows the model no seed task
        self.mask: Callable[[Any], Any] | None = None  # masks private text in the card (a run with private sources)
        self.privacy: dict[str, Any] | None = None  # the privacy audit's figures (privacy.json), for the card

    def info(
        self,
        records: Iterable[Record],
        funnel: dict[str, Any],
        engine: dict[str, Any],
        model: str,
        contamination: dict[str, dict[str, int]] | None = None,
        stop: dict[str, Any] | None = None,
        quality: dict[str, Any] | None = None,
        sources: dict[str, Any] | None = None,
    ) -> Any:
        """The card's facts; `contamination` is the decontamination filters' counts per reference,
        `stop` why the run stopped (reason, target, budget), `quality` the report's headline numbers,
        `sources` a documents run's corpus coverage (sources.json)."""
        from generator.publish.dataset import DatasetInfo

        c, d = self.config, self.config.dataset
        return DatasetInfo(
            name=d.name,
            pretty_name=d.pretty_name,
            license=d.license,
            languages=list(d.languages),
            model=model if c.model.name != BUNDLED else BUNDLED_REPO,
            model_revision=c.model.revision,
            method=c.generation.method,
            preferences=c.generation.preferences.model_dump(mode="json") if c.generation.preferences else None,
            templates=_templates(records),
            sampling=c.sampling.model_dump(),
            seed_source=self.starts_from or c.generation.seeds,
            funnel=funnel,
            engine=engine,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            version=__version__,
            repo_id=d.push.repo if d.push else None,
            contamination=contamination or {},
            stop=stop or {},
            quality=quality,
            sources=sources,
            privacy=self.privacy,
        )

    def write(
        self,
        records: Iterable[Record],
        funnel: Funnel,
        engine: dict[str, Any],
        model: str,
        contamination: dict[str, dict[str, int]] | None = None,
        stop: dict[str, Any] | None = None,
        quality: dict[str, Any] | None = None,
        sources: dict[str, Any] | None = None,
    ) -> Path:
        from generator.publish.dataset import write_dataset  # heavy import (datasets, pyarrow)

        d = self.config.dataset
        template = self.config.resolve(d.card_template) if d.card_template else None
        out = write_dataset(
            records,
            self.out_dir,
            self.info(records, funnel.to_dict(), engine, model, contamination, stop, quality, sources),
            test_ratio=d.test_ratio,
            split_seed=d.split_seed,
            card_template=template,
            save_to_disk=d.save_to_disk,
        )
        if self.mask is not None:  # the card's examples may quote a private record
            from generator.core.files import write_atomic
            from generator.publish.dataset import CARD

            card = (out / CARD).read_text(encoding="utf-8")
            write_atomic(out / CARD, self.mask(card).encode("utf-8"))
        return out

    def checkpoint(self, records: Iterable[Record], funnel: Funnel, engine: dict[str, Any], model: str) -> None:
        """The records so far, written and pushed while the run goes on; tasks still waiting for
        their output are not in the funnel yet."""
        self.write(records, funnel, engine, model)
        n = len(records) if isinstance(records, Sized) else funnel.kept
        self.push(f"Checkpoint: {n} records so far")
        log(f"checkpoint pushed: {n} records")

    def push(self, message: str | None = None) -> None:
        from generator.publish.hub import push_dataset

        p = self.config.dataset.push
        if p is None:
            raise ValueError("DatasetWriter.push() called for a config without dataset.push")
        result = push_dataset(self.out_dir, p.repo, private=p.private, revision=p.revision, message=message)
        log(result.summary())

    def split_counts(self) -> dict[str, int]:
        """Rows per split in the written dataset."""
        import pyarrow.parquet as pq

        counts: dict[str, int] = {}
        for f in sorted((self.out_dir / "data").glob("*.parquet")):
            split = f.name.split("-")[0]
            counts[split] = counts.get(split, 0) + pq.ParquetFile(f).metadata.num_rows
        return counts


def _templates(records: Iterable[Record]) -> list[str]:
    """The templates the records came from: a spill file knows them, a list is read for them."""
    known = getattr(records, "templates", None)
    if known is not None:
        return sorted(known)
    return sorted({r.meta.get("template", "") for r in records} - {""})
