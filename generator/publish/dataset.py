"""The finished dataset on disk: parquet shards per split, the dataset card, exports.

Layout written by `write_dataset` (the folder is what `push_dataset` uploads):

    out_dir/README.md                       the card (YAML metadata + generated documentation)
    out_dir/data/{split}-00000-of-0000N.parquet
    out_dir/hf/                             for `load_from_disk`: `save_to_disk`'s layout, one Arrow file a split

`datasets.load_dataset(str(out_dir))` reads data/ through the card's `configs`; the same files on
the Hub give the same rows and splits.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.core.errors import ConfigError, InstructforgeError
from generator.core.files import atomic_open, swap_dir
from generator.core.memory import give_back
from generator.core.paths import builtin_path
from generator.core.records import PREFERENCE, Record
from generator.core.sandbox import environment

DATA_DIR = "data"
DISK_DIR = "hf"
CARD = "README.md"
REPORT = "report.html"  # the run report (generator/report), pushed with the dataset, linked from the card
REPO_PLACEHOLDER = "<repo_id>"  # the card's load snippet before the dataset has a Hub repo
SHARD_BYTES = 256 * 2**20
ROW_GROUP_ROWS = 10_000  # the most rows in a parquet row group (held whole while it is written)
STAGE_ROWS = 2_000  # rows encoded at a time while staging: what the write holds in Python objects
STAGE_DIR = ".stage"  # the rows of each split before the shards are written; removed after
SPLITS = ("train", "test")
# Known meta keys become typed columns; anything else is kept, JSON-encoded, in `meta.extra`.
META_KEYS = ("task_type", "template", "model", "round", "seed_ids", "scores")


def features(preferences: bool = False, tools: bool = False, labels: bool = False) -> Any:
    """The dataset's explicit schema; with `preferences`, also `prompt`, `chosen` and `rejected`
    (chat messages: TRL's conversational preference format with an explicit prompt) and `scores`
    (each response's judge score and the check it failed, if any). With `labels`, also `prompt`,
    `completion` (the last message) and `label` (bool): TRL's conversational unpaired preference
    format, which its KTOTrainer reads; a row without a label has None. With `tools`, messages also
    have OpenAI's `tool_calls` (arguments as JSON text), `tool_call_id` and `name`, and a `tools`
    column holds the tools list as JSON text (its schemas differ from row to row).

    `meta.scores` is a list of {name, value} rather than a struct keyed by score name: which
    scores exist depends on the filters configured, and a struct would change the schema from one
    run (or one checkpoint push) to the next, which breaks merging shards and pushing updates.
    A list of pairs keeps one schema, stays typed (float64) and is queryable without parsing JSON.
    """
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    if tools:
        call = {
            "id": Value("string"),
            "type": Value("string"),
            "function": {"name": Value("string"), "arguments": Value("string")},
        }
        message.update(tool_calls=List(call), tool_call_id=Value("string"), name=Value("string"))
    pairs = {
        "prompt": List(message),
        "chosen": List(message),
        "rejected": List(message),
        "scores": List({"response": Value("int32"), "score": Value("float64"), "reason": Value("string")}),
    }
    unpaired = {"prompt": List(message), "completion": List(message), "label": Value("bool")}
    return Features(
        {
            "id": Value("string"),
            "instruction": Value("string"),
            "input": Value("string"),
            "output": Value("string"),
            "messages": List(message),
            "meta": {
                "task_type": Value("string"),
                "template": Value("string"),
                "model": Value("string"),
                "round": Value("int32"),
                "seed_ids": List(Value("string")),
                "scores": List({"name": Value("string"), "value": Value("float64")}),
                "extra": Value("string"),
            },
            **(pairs if preferences else {}),
            **(unpaired if labels else {}),
            **({"tools": Value("string")} if tools else {}),
        }
    )


TOOL_FIELDS = ("tool_calls", "tool_call_id", "name")


def _full_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with every tool field (None where unset), as the tools schema stores them."""
    return [{"role": m["role"], "content": m["content"], **{k: m.get(k) for k in TOOL_FIELDS}} for m in messages]


@dataclass
class DatasetInfo:
    """What the card says about how the dataset was made; the pipeline fills it."""

    name: str
    model: str
    pretty_name: str | None = None
    model_revision: str | None = None
    method: str = "self_instruct"
    preferences: dict[str, Any] | None = None  # generation.preferences, when the rows are pairs
    templates: list[str] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    seed_source: str = "builtin"
    funnel: dict[str, Any] = field(default_factory=dict)  # filters.base.Funnel.to_dict()
    engine: dict[str, Any] = field(default_factory=dict)  # request/token counts, throughput
    created_at: str = ""
    version: str = ""
    license: str = "apache-2.0"
    languages: list[str] = field(default_factory=lambda: ["en"])
    repo_id: str | None = None
    contamination: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per decontamination reference: {references, ngram_overlap, semantic_overlap} (rows it caught)."""
    stop: dict[str, Any] = field(default_factory=dict)
    """Why the run stopped: {reason, kind, num_records, refills, rounds, budget: {limits, spent, stopped_by}}."""
    quality: dict[str, Any] | None = None
    """The report's headline numbers (generator.report.card_quality) for the card; none when no report."""
    sources: dict[str, Any] | None = None
    """A documents run's corpus coverage (generator/documents/coverage.py); none for other methods."""
    privacy: dict[str, Any] | None = None
    """The privacy audit (privacy.json) of a run with private sources; none without."""


# --- rows -----------------------------------------------------------------------------------------


def record_to_row(record: Record, tools: bool = False, labels: bool = False) -> dict[str, Any]:
    """A record as a row of `features()`: known meta keys typed, the rest JSON in `meta.extra`;
    with `tools` or `labels`, as a row of `features(tools=True)` or `features(labels=True)` (the
    label then in its column, not in `meta.extra`)."""
    row = record.to_row()
    row.pop("tools", None)
    meta = dict(record.meta)
    pair = meta.pop(PREFERENCE, None)
    if labels:
        meta.pop("label", None)
        row["prompt"], row["completion"], row["label"] = row["messages"][:-1], row["messages"][-1:], record.label
    scores = meta.get("scores") or {}
    rnd = meta.get("round")
    extra = {k: v for k, v in meta.items() if k not in META_KEYS}
    row["meta"] = {
        "task_type": _opt_str(meta.get("task_type")),
        "template": _opt_str(meta.get("template")),
        "model": _opt_str(meta.get("model")),
        "round": int(rnd) if rnd is not None else None,
        "seed_ids": [str(s) for s in meta.get("seed_ids") or []],
        "scores": [{"name": str(k), "value": float(v)} for k, v in sorted(scores.items())],
        "extra": json.dumps(extra, ensure_ascii=False, sort_keys=True, default=str) if extra else None,
    }
    if pair is not None:
        messages = row["messages"]
        row["prompt"] = messages[:-1]
        row["chosen"] = messages[-1:]
        row["rejected"] = [{"role": "assistant", "content": pair["rejected"]}]
        row["scores"] = [
            {"response": int(s["response"]), "score": s.get("score"), "reason": s.get("reason")} for s in pair["scores"]
        ]
    if tools:
        for key in ("messages", "prompt", "chosen", "rejected", "completion"):
            if key in row:
                row[key] = _full_messages(row[key])
        row["tools"] = None if record.tools is None else json.dumps(record.tools, ensure_ascii=False)
    elif record.uses_tools:
        raise InstructforgeError(
            f"record {record.id} has tool calls or a tools list but the dataset's schema has no tool columns; "
            "write its records together with the other tool rows"
        )
    return row


def row_to_record(row: dict[str, Any]) -> Record:
    """The inverse of `record_to_row` (what `Record.from_row` expects back as `meta`)."""
    from generator.core.readers import PARSERS

    return PARSERS["own"]("row", dict(row)).to_record()


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def split_of(record_id: str, test_ratio: float, split_seed: int) -> str:
    """`test` or `train`, from a hash of the seed and the record id.

    Hashing each id (rather than shuffling the list) keeps a record in the same split when the
    dataset grows: checkpoint pushes and resumed runs never move a record from test to train.
    """
    if test_ratio <= 0:
        return "train"
    digest = hashlib.sha256(f"{split_seed}:{record_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_ratio else "train"


def split_records(records: list[Record], test_ratio: float, split_seed: int) -> dict[str, list[Record]]:
    """Deterministic train/test split; no test split when `test_ratio` is 0. Order is kept.

    With a ratio above 0 and at least two records, neither split is left empty; a single record
    goes to train (`load_dataset` refuses empty splits).
    """
    if not 0 <= test_ratio < 1:
        raise ConfigError(f"dataset.test_ratio must be in [0, 1), got {test_ratio!r}")
    if test_ratio == 0 or len(records) < 2:
        return {"train": list(records)}
    test_ids = {r.id for r in records if split_of(r.id, test_ratio, split_seed) == "test"}
    if len(records) >= 2 and (not test_ids or len(test_ids) == len({r.id for r in records})):
        # Tiny datasets: move the one record nearest the threshold so both splits exist.
        def key(r: Record) -> bytes:
            return hashlib.sha256(f"{split_seed}:{r.id}".encode()).digest()

        ordered = sorted(records, key=key)
        test_ids = {ordered[0].id} if not test_ids else test_ids - {ordered[-1].id}
    return {
        "train": [r for r in records if r.id not in test_ids],
        "test": [r for r in records if r.id in test_ids],
    }


# --- writing --------------------------------------------------------------------------------------


def write_dataset(
    records: Iterable[Record] | Mapping[str, list[Record]],
    out_dir: Path,
    info: DatasetInfo,
    *,
    test_ratio: float,
    split_seed: int,
    card_template: Path | None = None,
    save_to_disk: bool = True,
) -> Path:
    """Write the dataset folder (see the module docstring) and return it.

    `records` is read once, as a stream (a list or a spill file's `KeptRecords`), or is the rows of
    each split by name (the splits of an input kept, as `dedup` keeps them): rows go to one
    Arrow stream file per split in batches of `STAGE_ROWS`; the card's statistics are read from
    those files batch by batch, the parquet shards are written a row group at a time (at most
    `ROW_GROUP_ROWS` rows) from one pass over each file, and the files themselves become the
    `save_to_disk` copy. So the write holds about one row group whatever the size. The splits are
    those of `split_records`; the rows are those `Dataset.to_parquet` writes.

    The folder is built next to `out_dir` and swapped in at the end, so a crash leaves either the
    old dataset or the new one, and shards of an earlier write never linger. `out_dir` belongs to
    the dataset: anything else in it is replaced.
    """
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # the run has its own bar

    if isinstance(records, Sized) and not len(records):
        raise _no_records()
    out_dir = Path(out_dir)
    template = _load_card_template(card_template)  # fail on a bad template before writing
    if not 0 <= test_ratio < 1:
        raise ConfigError(f"dataset.test_ratio must be in [0, 1), got {test_ratio!r}")
    give_back()  # what the caller freed (a run's indexes): the write grows on it, not on top of it
    with swap_dir(out_dir) as tmp:
        stage = tmp / STAGE_DIR
        stage.mkdir()
        if isinstance(records, Mapping):
            staged = _stage_given_splits(records, stage)
        else:
            staged = _stage_splits(records, stage, test_ratio, split_seed)
        stats, examples, sizes = _statistics(staged)
        (tmp / DATA_DIR).mkdir()
        for name, path in staged.items():
            _write_parquet(path, sizes[name], tmp / DATA_DIR, name)
        if save_to_disk:
            _disk_copy(staged, tmp / DATA_DIR, tmp / DISK_DIR)
        card = render_card(template, info, stats, examples, sizes)
        shutil.rmtree(stage)
        (tmp / CARD).write_text(card, encoding="utf-8")
    return out_dir


@dataclass(frozen=True)
class SplitSize:
    """A staged split's rows, its Arrow size in bytes (what `Dataset.data.nbytes` says) and the
    row count and size of each staged batch, in order."""

    rows: int
    nbytes: int
    batches: tuple[tuple[int, int], ...] = ()
    preferences: bool = False  # the rows are preference pairs (`features(preferences=True)`)
    tools: bool = False  # the rows have the tool columns (`features(tools=True)`)
    labels: bool = False  # the rows have KTO labels (`features(labels=True)`)


def _slice(reader: Any, start: int, stop: int) -> Any:
    """Rows [start, stop) of a stream of record batches as a table whose chunks are the batches
    sliced to the range, as `datasets` slices a table; batches before the range are not read."""
    import pyarrow as pa

    parts = []
    offset = 0
    for batch in reader:
        end = offset + batch.num_rows
        if end > start and offset < stop:
            parts.append(batch.slice(max(start - offset, 0), min(stop, end) - max(start, offset)))
        offset = end
        if offset >= stop:
            break
    return pa.Table.from_batches(parts, schema=reader.schema)


class _Ranges:
    """Consecutive row ranges of a staged split, read in one pass: `take(n)` is the next `n` rows as
    a one-chunk table, so only the batches a range touches are in memory, and the file is read
    once whatever its size."""

    def __init__(self, reader: Any) -> None:
        self.reader = iter(reader)
        self.schema = reader.schema
        self.left: Any = None  # the rest of the batch the last range ended in

    def take(self, n: int) -> Any:
        import pyarrow as pa

        parts = []
        while n > 0:
            batch = self.left if self.left is not None else next(self.reader)
            self.left = None
            if batch.num_rows > n:
                batch, self.left = batch.slice(0, n), batch.slice(n)
            if batch.num_rows:
                parts.append(batch)
            n -= batch.num_rows
        # one chunk, as `datasets` hands the writer a slice of its one-chunk table: the page
        # boundaries (content-defined chunking) follow the chunks, and so the file's bytes
        return pa.Table.from_batches(parts, schema=self.schema).combine_chunks()


def _row_group_rows(size: SplitSize, start: int, stop: int, path: Path) -> int:
    """Rows per row group for the shard of rows [start, stop): what `datasets` derives from the
    shard's `nbytes` (fewer rows for bigger bytes), at most `ROW_GROUP_ROWS`. Whole staged batches
    count their known sizes; the batches the shard cuts are measured only when it matters, that is
    when counting them whole would give fewer than `ROW_GROUP_ROWS` rows."""
    import pyarrow as pa
    from datasets.arrow_writer import get_writer_batch_size_from_data_size

    inside, touched = 0, 0  # bytes of the batches wholly in the range, and of all it touches
    offset = 0
    for rows, nbytes in size.batches:
        end = offset + rows
        if end > start and offset < stop:
            touched += nbytes
            inside += nbytes if offset >= start and end <= stop else 0
        offset = end
    if inside != touched and get_writer_batch_size_from_data_size(stop - start, touched) < ROW_GROUP_ROWS:
        with pa.memory_map(str(path)) as source:
            touched = _slice(pa.ipc.open_stream(source), start, stop).nbytes
    return min(get_writer_batch_size_from_data_size(stop - start, touched), ROW_GROUP_ROWS)


def _write_parquet(path: Path, size: SplitSize, data_dir: Path, name: str) -> None:
    """The split's parquet shards, as `Dataset.shard(n, i, contiguous=True).to_parquet` writes them
    (`n` from `SHARD_BYTES`; the same bytes while `datasets`' row groups are at most `ROW_GROUP_ROWS`
    rows), with row groups of at most `ROW_GROUP_ROWS` rows. The staged file is read once, in order
    (`_Ranges`): the write holds about one row group whatever the split's size."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import config
    from datasets.arrow_writer import (
        get_parquet_column_options,
        get_writer_batch_size_from_features,
    )

    feats = features(preferences=size.preferences, tools=size.tools, labels=size.labels)
    schema = feats.arrow_schema
    n = max(1, math.ceil(size.nbytes / SHARD_BYTES))
    div, mod = divmod(size.rows, n)
    with pa.OSFile(str(path)) as source:  # read once, not mapped: written rows leave the process
        rows = _Ranges(pa.ipc.open_stream(source))
        for i in range(n):
            start = div * i + min(i, mod)
            stop = start + div + (1 if i < mod else 0)
            # A row group is held whole while it is written: at most `ROW_GROUP_ROWS` rows, not the 100 MB
            # `datasets` allows, so the write's memory does not grow with the split.
            by_features = get_writer_batch_size_from_features(feats)
            batch_size = min(by_features, ROW_GROUP_ROWS) if by_features else _row_group_rows(size, start, stop, path)
            writer = pq.ParquetWriter(
                str(data_dir / f"{name}-{i:05d}-of-{n:05d}.parquet"),
                schema=schema,
                use_content_defined_chunking=config.DEFAULT_CDC_OPTIONS,
                write_page_index=True,
                **get_parquet_column_options(feats, schema),
            )
            for offset in range(start, stop, batch_size):
                writer.write_table(rows.take(min(batch_size, stop - offset)))
            writer.add_key_value_metadata({"content_defined_chunking": json.dumps(config.DEFAULT_CDC_OPTIONS)})
            writer.close()


def _disk_copy(staged: dict[str, Path], data_dir: Path, disk_dir: Path) -> None:
    """The `save_to_disk` copy (what `datasets.load_from_disk` reads): each staged Arrow file moved
    into place as the split's one data file, with the state and info files `save_to_disk` writes.
    The fingerprint is a hash of the split's parquet shards."""
    from datasets import DatasetInfo as HFInfo
    from datasets.utils.py_utils import asdict as hf_asdict  # as save_to_disk writes the info

    info = hf_asdict(HFInfo(features=_staged_features(next(iter(staged.values())))))
    for name, path in staged.items():
        split_dir = disk_dir / name
        split_dir.mkdir(parents=True)
        data_file = "data-00000-of-00001.arrow"
        path.rename(split_dir / data_file)
        digest = hashlib.sha256()
        for shard in sorted(data_dir.glob(f"{name}-*.parquet")):
            with shard.open("rb") as f:
                while chunk := f.read(2**20):
                    digest.update(chunk)
        state = {
            "_data_files": [{"filename": data_file}],
            "_fingerprint": digest.hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (split_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        (split_dir / "dataset_info.json").write_text(
            json.dumps({key: info[key] for key in sorted(info)}, indent=2), encoding="utf-8"
        )
    (disk_dir / "dataset_dict.json").write_text(json.dumps({"splits": list(staged)}), encoding="utf-8")


def _no_records() -> InstructforgeError:
    return InstructforgeError(
        "no records to write: every candidate was dropped or none was generated; "
        "the run's funnel shows which filter dropped what"
    )


class _SplitFile:
    """Rows of one split appended to an Arrow stream file, `STAGE_ROWS` at a time, each batch
    encoded as `Dataset.from_dict` encodes a whole split (a split of up to `STAGE_ROWS` rows is
    one batch: the same table, bytes and card as a dataset built in memory)."""

    def __init__(self, path: Path, feats: Any) -> None:
        self.path = path
        self.features = feats
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._writer: Any = None

    def add(self, row: dict[str, Any]) -> None:
        self._buffer.append(row)
        self.rows += 1
        if len(self._buffer) >= STAGE_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        from datasets import Dataset

        feats = self.features
        # columns, not from_list: an empty split still gets every column
        cols = {col: [row[col] for row in self._buffer] for col in feats}
        table = Dataset.from_dict(cols, features=feats).data.table
        if self._writer is None:
            self._writer = pa.ipc.new_stream(str(self.path), table.schema)
        self._writer.write_table(table)
        self._buffer = []

    def close(self) -> Path:
        if self._buffer or self._writer is None:
            self._flush()
        self._writer.close()
        return self.path


def _stage_given_splits(splits: Mapping[str, list[Record]], stage: Path) -> dict[str, Path]:
    """The rows of each named split in its own Arrow file under `stage` (train and test first);
    empty splits are left out."""
    every = [r for records in splits.values() for r in records]
    if not every:
        raise _no_records()
    feats = features(
        preferences=PREFERENCE in every[0].meta,
        tools=any(r.uses_tools for r in every),
        labels=any(r.label is not None for r in every),
    )
    staged = {}
    for name in sorted(splits, key=lambda s: (s not in SPLITS, SPLITS.index(s) if s in SPLITS else 0, s)):
        if splits[name]:
            out = _SplitFile(stage / f"{name}.arrow", feats)
            for r in splits[name]:
                out.add(record_to_row(r, "tools" in feats, "label" in feats))
            staged[name] = out.close()
    return staged


def _stage_splits(records: Iterable[Record], stage: Path, test_ratio: float, split_seed: int) -> dict[str, Path]:
    """The rows of each split in its own Arrow file under `stage`, split as `split_records` does
    (the tiny-dataset rule included), in the order the records came. The first record decides the
    schema: preference columns when it is a pair."""
    # A list is scanned for tool rows and labels; a stream (a run's kept spill, which has neither) is
    # told by its first.
    tools = isinstance(records, list) and any(r.uses_tools for r in records)
    labels = isinstance(records, list) and any(r.label is not None for r in records)
    records = iter(records)
    first = next(records, None)
    tools = tools or (first is not None and first.uses_tools)
    labels = labels or (first is not None and first.label is not None)
    feats = features(preferences=first is not None and PREFERENCE in first.meta, tools=tools, labels=labels)
    train, test = (_SplitFile(stage / f"{name}.arrow", feats) for name in SPLITS)
    # The records with the lowest and highest split key, for the tiny-dataset rule.
    lowest: tuple[bytes, str] | None = None
    highest: tuple[bytes, str] | None = None
    for r in itertools.chain([first] if first is not None else [], records):
        row = record_to_row(r, tools, labels)
        if test_ratio == 0:
            train.add(row)
            continue
        key = hashlib.sha256(f"{split_seed}:{row['id']}".encode()).digest()
        (test if int.from_bytes(key[:8], "big") / 2**64 < test_ratio else train).add(row)
        lowest = min(lowest or (key, row["id"]), (key, row["id"]))
        highest = max(highest or (key, row["id"]), (key, row["id"]))
    total = train.rows + test.rows
    if not total:
        raise _no_records()
    if test_ratio == 0 or total < 2:
        if test.rows:  # a single record goes to train
            _move(test, train, None)
        train.close()
        test.close()
        return {"train": train.path}
    # Tiny datasets: move the one record nearest the threshold so both splits exist.
    if not test.rows and lowest is not None:
        train = _move(train, test, lowest[1])
    elif not train.rows and highest is not None:
        test = _move(test, train, highest[1])
    return {"train": train.close(), "test": test.close()}


def _move(source: _SplitFile, target: _SplitFile, record_id: str | None) -> _SplitFile:
    """Move the rows with `record_id` (every row when None) from `source` to the empty `target`;
    returns what is left of `source`, rewritten."""
    import pyarrow as pa

    left = _SplitFile(source.path.with_suffix(".left.arrow"), source.features)
    source.close()
    with pa.OSFile(str(source.path)) as f:
        for batch in pa.ipc.open_stream(f):
            for row in batch.to_pylist():
                (target if record_id is None or row["id"] == record_id else left).add(row)
    source.path.unlink()
    return left


def _staged_features(path: Path) -> Any:
    """The features of a staged split: with the preference, tool and label columns it has."""
    import pyarrow as pa

    with pa.OSFile(str(path)) as f:
        names = pa.ipc.open_stream(f).schema.names
    return features(preferences="chosen" in names, tools="tools" in names, labels="label" in names)


class _Lengths:
    """Word counts as a histogram (a count per length: small whatever the rows), summarised as the
    card shows them."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    def add(self, words: int) -> None:
        self.counts[words] += 1

    def summary(self) -> dict[str, Any]:
        n = sum(self.counts.values())
        if not n:
            return {"min": 0, "median": 0, "mean": 0, "p90": 0, "max": 0}
        ordered = sorted(self.counts.items())

        def nth(k: int) -> int:  # the k-th smallest (from 0)
            seen = 0
            for value, count in ordered:
                seen += count
                if k < seen:
                    return value
            return ordered[-1][0]

        median = nth(n // 2) if n % 2 else (nth(n // 2 - 1) + nth(n // 2)) / 2
        return {
            "min": ordered[0][0],
            "median": int(median),
            "mean": round(sum(v * c for v, c in ordered) / n, 1),
            "p90": nth(min(n - 1, math.ceil(0.9 * n) - 1)),
            "max": ordered[-1][0],
        }


def _statistics(staged: dict[str, Path]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, SplitSize]]:
    """The card's statistics, in one pass over the staged splits (train first), read batch by
    batch; its examples (the first three train rows); and each split's size."""
    import pyarrow as pa
    import pyarrow.compute as pc

    splits: dict[str, int] = {}
    sizes: dict[str, SplitSize] = {}
    task_types: Counter[str] = Counter()
    user_turns: Counter[int] = Counter()
    with_input = 0
    lengths = {"instruction": _Lengths(), "input": _Lengths(), "output": _Lengths()}
    examples: list[dict[str, Any]] = []
    for name, path in staged.items():
        splits[name] = 0
        batches = []
        with pa.OSFile(str(path)) as f:
            reader = pa.ipc.open_stream(f)
            pairs = "chosen" in reader.schema.names
            tools = "tools" in reader.schema.names
            labels = "label" in reader.schema.names
            for batch in reader:
                batches.append((batch.num_rows, batch.nbytes))
                instructions = batch.column("instruction").to_pylist()
                inputs = batch.column("input").to_pylist()
                outputs = batch.column("output").to_pylist()
                types = batch.column("meta").field("task_type").to_pylist()
                user_turns.update(n // 2 for n in pc.list_value_length(batch.column("messages")).to_pylist())
                splits[name] += batch.num_rows
                for i, (instruction, inp, out, task_type) in enumerate(zip(instructions, inputs, outputs, types)):
                    task_types[str(task_type or "unspecified")] += 1
                    lengths["instruction"].add(len(instruction.split()))
                    lengths["output"].add(len(out.split()))
                    if inp:
                        with_input += 1
                        lengths["input"].add(len(inp.split()))
                    if name == "train" and len(examples) < 3:
                        later = batch.column("messages")[i].as_py()[2:]
                        examples.append(
                            {
                                "instruction": instruction,
                                "input": inp,
                                "output": out,
                                "task_type": task_type,
                                "turns": later,
                            }
                        )
        sizes[name] = SplitSize(splits[name], sum(b for _, b in batches), tuple(batches), pairs, tools, labels)
    stats = {
        "total": sum(splits.values()),
        "splits": splits,
        "with_input": with_input,
        "task_types": dict(task_types.most_common()),
        "lengths": {k: v.summary() for k, v in lengths.items()},  # in words
        "user_turns": dict(sorted(user_turns.items())),  # rows per number of user turns
    }
    return stats, examples, sizes


# --- the card -------------------------------------------------------------------------------------


def _load_card_template(path: Path | None) -> Any:
    from jinja2 import TemplateError

    source = Path(path) if path is not None else builtin_path("prompts", "card.md.jinja")
    if source is None or not source.is_file():
        raise ConfigError(
            f"dataset card template not found: {path or 'prompts/card.md.jinja'}; "
            "give an existing .jinja file or leave dataset.card_template unset"
        )
    # A card is a file: its final newline is kept.
    env = environment(
        trim=True, keep_trailing_newline=True, filters={"num": lambda v: f"{v:,}" if isinstance(v, int) else v}
    )
    try:
        return env.from_string(source.read_text(encoding="utf-8"))
    except TemplateError as err:
        raise ConfigError(f"{source}: not a valid Jinja template: {err}") from None


def size_category(n: int) -> str:
    """The Hub's `size_categories` value for n rows."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>1T" if n >= 10**12 else "1B<n<10B"


def card_metadata(info: DatasetInfo, sizes: dict[str, SplitSize]) -> dict[str, Any]:
    """The card's YAML header: what the Hub validates and `load_dataset` reads (`configs`)."""
    from datasets import DatasetInfo as HFInfo

    total = sum(s.rows for s in sizes.values())
    pairs = any(s.preferences for s in sizes.values())
    labels = any(s.labels for s in sizes.values())
    feats = features(preferences=pairs, tools=any(s.tools for s in sizes.values()), labels=labels)
    hf_info = HFInfo(features=feats)._to_yaml_dict()
    hf_info["splits"] = [{"name": n, "num_bytes": s.nbytes, "num_examples": s.rows} for n, s in sizes.items()]
    hf_info["dataset_size"] = sum(s.nbytes for s in sizes.values())
    meta: dict[str, Any] = {
        "pretty_name": info.pretty_name or info.name,
        "license": info.license,
        "language": list(info.languages),
        "task_categories": ["text-generation"],
        "size_categories": [size_category(total)],
        "tags": ["synthetic", "instruction-tuning", info.method.replace("_", "-"), "instructforge"]
        + (["dpo", "preference"] if pairs else [])
        + (["kto"] if labels else []),
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": n, "path": f"{DATA_DIR}/{n}-*"} for n in sizes],
            }
        ],
        "dataset_info": hf_info,
    }
    return meta


def funnel_rows(funnel: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (filter, reason), in filter order, with its share of the candidates."""
    candidates = funnel.get("candidates") or 0
    rows = []
    for name, reasons in (funnel.get("drops") or {}).items():
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            share = f"{100 * count / candidates:.1f}%" if candidates else "-"
            rows.append({"filter": name, "reason": reason, "dropped": count, "share": share})
    return rows


def _clip(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def _fence(*texts: str) -> str:
    """A code fence longer than any backtick run in the texts, so none closes it early."""
    longest = max((len(run) for t in texts for run in re.findall(r"`+", t)), default=0)
    return "`" * max(3, longest + 1)


def elapsed_text(seconds: float) -> str:
    """`73.2` -> "1 min 13 s"; `4000` -> "1 h 6 min"."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def engine_rows(engine: dict[str, Any]) -> list[tuple[str, str]]:
    """The card's generation figures as (label, value) rows, from an engine's `to_dict()` (or a
    merge's totals). Endpoint URLs never appear (a managed server's is a throwaway 127.0.0.1 port,
    an external one is the user's infrastructure): only how many there were."""
    rows: list[tuple[str, str]] = []

    def add(key: str, label: str, fmt: Any = "{:,}") -> None:
        if engine.get(key) is not None:
            rows.append((label, fmt(engine[key]) if callable(fmt) else fmt.format(engine[key])))

    add("shards", "shards")
    if engine.get("sessions", 1) > 1:  # a resumed run: the figures add up its sessions
        add("sessions", "sessions")
    add("requests", "requests")
    add("failed", "failed requests")
    add("retried", "retried attempts")
    if "errors" in engine:
        errors = {k: v for k, v in engine["errors"].items() if v}
        by_kind = ", ".join(
            f"{kind} {count:,}" for kind, count in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        rows.append(("failed attempts by kind", by_kind or "none"))
    add("prompt_tokens", "prompt tokens")
    add("completion_tokens", "completion tokens")
    add("completion_tokens_per_s", "completion tokens per second", "{:,.1f}")
    add("elapsed_s", "elapsed", elapsed_text)
    if engine.get("endpoints"):
        rows.append(("endpoints", str(len(engine["endpoints"]))))
    return rows


def render_card(
    template: Any,
    info: DatasetInfo,
    stats: dict[str, Any],
    examples: list[dict[str, Any]],
    sizes: dict[str, SplitSize],
) -> str:
    """The card's text; `stats`, `examples` (rows: instruction, input, output, task_type and
    `turns`, a conversation's messages after the first exchange) and the split `sizes` come from
    `_statistics`."""
    metadata = yaml.safe_dump(card_metadata(info, sizes), sort_keys=False, allow_unicode=True)
    info_vars = asdict(info)
    # No endpoint URL reaches a template, the built-in one or a user's.
    info_vars["engine"] = {k: v for k, v in info.engine.items() if k != "endpoints"}
    shown = [
        {
            "instruction": _clip(r["instruction"]),
            "input": _clip(r["input"]),
            "output": _clip(r["output"]),
            "task_type": r["task_type"] or "",
            "turns": [{"role": m["role"], "content": _clip(m["content"])} for m in r.get("turns") or []],
            "fence": _fence(r["instruction"], r["input"], r["output"], *(m["content"] for m in r.get("turns") or [])),
        }
        for r in examples
    ]
    try:
        return template.render(
            metadata=metadata,
            info=info_vars,
            engine_rows=engine_rows(info.engine),
            stats=stats,
            funnel=info.funnel,
            funnel_rows=funnel_rows(info.funnel),
            examples=shown,
            repo_id=info.repo_id or REPO_PLACEHOLDER,
            sampling_json=json.dumps(info.sampling, indent=2, sort_keys=True),
        )
    except Exception as err:  # a user template can fail in many ways; name it
        raise ConfigError(f"the dataset card template failed to render: {type(err).__name__}: {err}") from None


# --- reading and exporting ------------------------------------------------------------------------


def resolve_dataset_dir(path: Path) -> Path:
    """The dataset folder itself, or the `dataset/` folder of a run directory."""
    path = Path(path)
    for candidate in (path, path / "dataset"):
        if (candidate / CARD).is_file() and (candidate / DATA_DIR).is_dir():
            return candidate
    raise ConfigError(
        f"{path} holds no dataset: expected {CARD} and {DATA_DIR}/*.parquet in it "
        "(or in its dataset/ folder); run `instructforge generate` first"
    )


def data_files(dataset_dir: Path) -> dict[str, list[Path]]:
    """Parquet shards per split, in shard order."""
    folder = resolve_dataset_dir(dataset_dir) / DATA_DIR
    out: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.parquet")):
        out.setdefault(path.name.split("-", 1)[0], []).append(path)
    if not out:
        raise ConfigError(f"{folder} holds no .parquet shards; write the dataset again")
    return out


def read_rows(dataset_dir: Path, split: str | None = "train") -> list[dict[str, Any]]:
    """Rows of one split (all splits, train first, when `split` is None), as stored: read through
    the reader every command shares (`core.readers`), which knows our dataset folders."""
    from generator.core.readers import open_tables

    folder = resolve_dataset_dir(dataset_dir)
    return [row for table in open_tables(folder, split=split, what="dataset") for _, row in table.rows]


def export(dataset_dir: Path, fmt: str, out_path: Path, *, split: str | None = "train") -> int:
    """Write one split (every split when None) in another trainer's format (`formats.WRITERS`:
    alpaca, sharegpt, chat, preference, ...); returns the number of rows."""
    from generator.publish.formats import WRITERS, write_records

    if fmt not in WRITERS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(WRITERS)}")
    from generator.core.readers import read_records

    folder = resolve_dataset_dir(dataset_dir)
    if split is not None and split not in data_files(folder):
        raise ConfigError(f"split {split!r} not in {folder}; it has {', '.join(sorted(data_files(folder)))}")
    records = read_records([folder], format="own", split=split, what="dataset")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_path, "w") as f:
        return write_records(records, fmt, f)
