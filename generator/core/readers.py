"""One reader for every file of records: seeds, `dedup` inputs, decontamination references, shards.

Two steps. `open_tables` turns a source into tables of raw rows, each row named by where it is
(`file: line 3`, `file: row 4`):

- JSON Lines (`.jsonl`, `.ndjson`; split on `\\n` only, so U+2028 and other Unicode line breaks
  inside strings stay where they are); a `.json` file holding one JSON array (or JSON Lines);
- CSV with a header; parquet; `.txt`, one text a line;
- a dataset folder of ours (README.md + data/*.parquet, or a run directory's `dataset/`), a
  `save_to_disk` folder, a folder of data files, or any folder `datasets.load_dataset` reads;
- a Hugging Face dataset on the Hub: `hf:owner/name` (`hf:owner/name:split` picks a split).

`common_rows` then recognises each table's schema by the keys of its first row (after the column
map), or takes the `format` given, and yields `Row`s, one common form that becomes a `Record`
(`Row.to_record`) or a seed task (generator/prompting/seeds.py). Keys a schema does not use go
into `meta`; a row that does not fit its table's schema is a `ConfigError` naming the file and line.

Heavy imports (pyarrow, datasets) happen inside the functions that need them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.core.errors import ConfigError
from generator.core.records import PREFERENCE, Record, record_id

FORMATS: dict[str, str] = {
    "seed_tasks": "Self-Instruct / Alpaca seed tasks: instruction, instances [{input, output}], "
    "optional id, name, is_classification",
    "own": "instructforge rows: id, instruction, input, output, messages, meta",
    "alpaca": "instruction, input, output",
    "dolly": "instruction, context, response, category",
    "sharegpt": "conversations [{from: human|gpt|system, value}]",
    "chat": "messages [{role: system|user|assistant, content}] (OpenAI chat)",
    "text": "prompt, question or text (and answer or completion); a .txt file, one text a line",
}
"""The schemas `common_rows` recognises, by name (the `format` option), with the keys that tell them."""

EXAMPLES: dict[str, str] = {
    "seed_tasks": '{"id": "seed_task_0", "name": "breakfast_suggestion", "instruction": "Is there anything I can '
    'eat for a breakfast that doesn\'t include eggs?", "instances": [{"input": "", "output": "Yes: oatmeal."}], '
    '"is_classification": false}',
    "own": '{"id": "3f2a9c1e0b7d4a55", "instruction": "Add the numbers.", "input": "2 and 3", "output": "5", '
    '"meta": {"task_type": "math"}}',
    "alpaca": '{"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat well ..."}',
    "dolly": '{"instruction": "When was Tomoaki Komorida born?", "context": "Komorida was born on July 10, 1981.", '
    '"response": "July 10, 1981", "category": "closed_qa"}',
    "sharegpt": '{"conversations": [{"from": "human", "value": "Hi, what is 2+2?"}, {"from": "gpt", "value": "4"}]}',
    "chat": '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a '
    'color."}, {"role": "assistant", "content": "Blue."}]}',
    "text": '{"question": "How many clips did Natalia sell?", "answer": "72"}',
}
"""One JSON Lines row per format (the README's table; a test reads each back as its format)."""

COLUMN_FIELDS = (
    "instruction",
    "input",
    "output",
    "id",
    "is_classification",
    "task_type",
    "domain",
    "instances",
    "messages",
    "conversations",
    "meta",
)
"""Logical fields a column map may rename (logical name -> column name in the source)."""

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".txt")
DATASET_CARD, DATASET_DATA = "README.md", "data"
TEXT_KEYS = ("prompt", "question", "text")
ANSWER_KEYS = ("answer", "completion")
SPEAKERS = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# Our dataset's typed meta columns (generator/publish/dataset.py writes them; `decode_meta` reads them).
_META_STRUCT = {"task_type", "template", "model", "round", "seed_ids", "scores", "extra"}


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One source row in the common form. Values are as the file gave them (not checked or coerced),
    so that a consumer can name a bad one; `to_record` checks them."""

    where: str
    format: str
    instruction: Any
    input: Any = None
    """None where the source has no input (or output): `to_record` reads it as ""."""
    output: Any = None
    id: Any = None
    instances: Any = None
    """Seed tasks only: the `instances` list as written."""
    messages: list[dict[str, Any]] | None = None
    """Chat formats only: every turn as {role, content}, the system prompt included."""
    turns: list[dict[str, Any]] | None = None
    """Our own format only: a conversation's messages after the first exchange."""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> Record:
        """The row as a Record; a seed task becomes one record (its first instance's input and
        output) with every instance kept in `meta["instances"]`."""
        meta = dict(self.meta)
        instruction = _text(self.instruction, "instruction", self.where, required=True)
        input, output = self.input, self.output
        if self.instances is not None:
            instances = self.instances
            if not (isinstance(instances, list) and instances and all(isinstance(i, dict) for i in instances)):
                raise ConfigError(
                    f'{self.where}: \'instances\' must be a non-empty list of {{"input", "output"}} objects, '
                    f"got {instances!r}"
                )
            input, output = instances[0].get("input"), instances[0].get("output")
            meta["instances"] = instances
        input = _text(input, "input", self.where)
        output = _text(output, "output", self.where)
        turns = list(self.turns or [])
        if self.id is not None and str(self.id) != record_id(instruction, input, turns):
            meta["source_id"] = self.id
        return Record(instruction=instruction, input=input, output=output, meta=meta, turns=turns)


def _text(value: Any, name: str, where: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {name!r} must be a string, got {value!r} ({type(value).__name__})")
    return value


def decode_meta(meta: Any) -> dict[str, Any]:
    """`meta` as a record holds it: our dataset's typed meta columns (scores as {name, value} pairs,
    other keys JSON in `extra`) are decoded; any other mapping is taken as it is."""
    if meta is None:
        return {}
    if isinstance(meta, str):  # a CSV or flattened export: meta as JSON text
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            return {"meta": meta}
    if not isinstance(meta, Mapping):
        return {"meta": meta}  # kept, not dropped: nothing is lost silently
    if set(meta) != _META_STRUCT:
        return dict(meta)
    out: dict[str, Any] = {k: meta[k] for k in ("task_type", "template", "model", "round") if meta.get(k) is not None}
    if meta.get("seed_ids"):
        out["seed_ids"] = list(meta["seed_ids"])
    if meta.get("scores"):
        out["scores"] = {s["name"]: s["value"] for s in meta["scores"]}
    if meta.get("extra"):
        out.update(json.loads(meta["extra"]))
    return out


# ---------------------------------------------------------------------------------------------- tables


@dataclass
class Table:
    """Raw rows of one file or dataset. `header` is the column names where the source has them
    (CSV, parquet, datasets); None for JSON, whose rows each carry their own keys."""

    label: str
    rows: Iterable[tuple[str, dict[str, Any]]]
    header: list[str] | None = None
    text_lines: bool = False
    """A .txt file: each row is {"text": line}."""


def open_tables(
    source: str | Path,
    *,
    split: str | None = None,
    config: str | None = None,
    base_dir: str | Path | None = None,
    what: str = "input",
) -> list[Table]:
    """The tables of a file, a folder or a Hub dataset (see the module docstring). A relative path
    is resolved against `base_dir`. `split`: of our dataset folders all splits (train first) when
    None; of other datasets `train`, or the only split. `what` names the source in errors."""
    text = str(source)
    if text.startswith("hf:"):
        name, _, hub_split = text[3:].partition(":")
        return [_hub_table(name, split or hub_split or None, config)]
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.is_file():
        return [_file_table(path)]
    if path.is_dir():
        return _folder_tables(path, split, config)
    if _REPO_ID.match(text) and not Path(text).suffix:
        return [_hub_table(text, split, config)]
    raise ConfigError(
        f"{what} {text!r} not found (looked at {path}); expected an existing file "
        f"({', '.join(FILE_SUFFIXES)}), a dataset folder, or a Hugging Face dataset as hf:owner/name"
    )


def _file_table(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return Table(str(path), _jsonl_rows(path, _read_text(path)))
    if suffix == ".json":
        return _json_table(path)
    if suffix == ".csv":
        return _csv_table(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return Table(str(path), _numbered(str(path), table.to_pylist()), header=list(table.column_names))
    if suffix == ".txt":
        lines = _read_text(path).split("\n")
        rows = [(f"{path}: line {n}", {"text": line.rstrip("\r")}) for n, line in enumerate(lines, 1) if line.strip()]
        return Table(str(path), rows, text_lines=True)
    raise ConfigError(
        f"{path}: unknown extension {path.suffix!r}; expected {', '.join(FILE_SUFFIXES)}, "
        "a dataset folder, or a Hugging Face dataset as hf:owner/name"
    )


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def _jsonl_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    # Not str.splitlines(): it also splits at U+2028, U+0085 and others, which JSON strings may hold.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); expected one JSON object a line"
            ) from None
        rows.append((where, _object(row, where)))
    return rows


def _object(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _json_table(path: Path) -> Table:
    """A JSON array of objects (alpaca_data.json, our `export --format alpaca`), else JSON Lines."""
    text = _read_text(path)
    if not text.lstrip().startswith("["):
        return Table(str(path), _jsonl_rows(path, text))
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
            "expected one JSON array of objects"
        ) from None
    rows = [(f"{path}: item {i}", _object(item, f"{path}: item {i}")) for i, item in enumerate(items, 1)]
    return Table(str(path), rows)


def _csv_table(path: Path) -> Table:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = list(reader.fieldnames or [])
    rows: list[tuple[str, dict[str, Any]]] = []
    for row in reader:
        where = f"{path}: line {reader.line_num}"
        extra = row.pop(None, None) or []  # type: ignore[call-overload]
        missing = sum(value is None for value in row.values())
        if extra or missing:
            raise ConfigError(
                f"{where}: {len(header) + len(extra) - missing} fields where the header has "
                f"{len(header)}; quote values that contain commas"
            )
        rows.append((where, row))
    return Table(str(path), rows, header=header)


def _numbered(label: str, rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    return ((f"{label}: row {i}", row) for i, row in enumerate(rows))


def _folder_tables(path: Path, split: str | None, config: str | None) -> list[Table]:
    for folder in (path, path / "dataset"):
        if (folder / DATASET_CARD).is_file() and (folder / DATASET_DATA).is_dir():
            return _our_dataset(folder, split)
    if any((path / name).is_file() for name in ("state.json", "dataset_dict.json")):
        return [_datasets_table(f"dataset folder {path}", lambda d: d.load_from_disk(str(path)), split)]
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in FILE_SUFFIXES)
    if files and split is None and config is None:
        return [_file_table(f) for f in files]
    return [_datasets_table(f"dataset folder {path}", lambda d: d.load_dataset(str(path), config), split)]


def _our_dataset(folder: Path, split: str | None) -> list[Table]:
    """Our dataset's parquet shards (generator/publish/dataset.py), one table per shard."""
    shards: dict[str, list[Path]] = {}
    for shard in sorted((folder / DATASET_DATA).glob("*.parquet")):
        shards.setdefault(shard.name.split("-", 1)[0], []).append(shard)
    if not shards:
        raise ConfigError(f"{folder / DATASET_DATA} holds no .parquet shards; write the dataset again")
    if split is not None and split not in shards:
        raise ConfigError(f"split {split!r} not in {folder}; it has {', '.join(sorted(shards))}")
    names = [split] if split is not None else sorted(shards, key=lambda s: (s not in ("train", "test"), s))
    return [_file_table(shard) for name in names for shard in shards[name]]


def _hub_table(name: str, split: str | None, config: str | None) -> Table:
    return _datasets_table(f"Hugging Face dataset {name!r}", lambda d: d.load_dataset(name, config), split)


def _datasets_table(label: str, load: Any, split: str | None) -> Table:
    import datasets

    try:
        loaded = load(datasets)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"could not load the {label}: {first} (offline, or a wrong name? a local copy works: "
            "give its folder or files)"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if split is not None:
            if split not in loaded:
                raise ConfigError(f"the {label} has no split {split!r}; it has {splits}")
            loaded = loaded[split]
        elif "train" in loaded:
            loaded = loaded["train"]
        elif len(splits) == 1:
            loaded = loaded[splits[0]]
        else:
            raise ConfigError(f"the {label} has splits {splits} and none is 'train'; name the split to read")
    return Table(label, _numbered(label, loaded), header=list(loaded.column_names))


# ---------------------------------------------------------------------------------------------- schemas


def check_column_map(column_map: Mapping[str, str] | None) -> dict[str, str]:
    """The column map checked: logical field -> source column, for the fields in COLUMN_FIELDS."""
    out: dict[str, str] = {}
    for key, value in (column_map or {}).items():
        if key not in COLUMN_FIELDS:
            raise ConfigError(
                f"column map: unknown field {key!r}; valid fields are {', '.join(COLUMN_FIELDS)} "
                "(map each to the column name in your data)"
            )
        if not isinstance(value, str) or not value:
            raise ConfigError(f"column map: {key!r} must name a column, got {value!r}")
        out[key] = value
    return out


def _renamed(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    if not columns:
        return dict(row)
    sources = set(columns.values())
    out = {k: v for k, v in row.items() if k not in sources}
    out.update({name: row[column] for name, column in columns.items() if column in row})
    return out


def detect_format(row: Mapping[str, Any]) -> str | None:
    """The schema a row's keys say, or None."""
    keys = set(row)
    if "instances" in keys:
        return "seed_tasks"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys:
        if "messages" in keys or "meta" in keys:
            return "own"
        if keys & {"context", "response", "category"}:
            return "dolly"
        return "alpaca"
    if "messages" in keys:
        return "chat"
    if keys & set(TEXT_KEYS):
        return "text"
    return None


def common_rows(table: Table, *, format: str | None = None, columns: Mapping[str, str] | None = None) -> Iterator[Row]:
    """The table's rows in the common form; the schema is `format`, or the first row's (see FORMATS)."""
    if format is not None and format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)} (or leave it out)")
    columns = check_column_map(columns)
    if table.header is not None:
        for name, column in columns.items():
            if column not in table.header:
                raise ConfigError(
                    f"{table.label}: missing column {column!r} for the {name}; columns are "
                    f"{', '.join(sorted(table.header))}; map yours with a column map, e.g. {{{name!r}: 'your_column'}}"
                )
    fmt = format or ("text" if table.text_lines else None)
    for where, raw in table.rows:
        row = _renamed(raw, columns)
        if fmt is None:
            fmt = detect_format(row)
            if fmt is None:
                raise ConfigError(
                    f"{where}: cannot tell the format from the keys {', '.join(sorted(map(str, row))) or '(none)'}; "
                    f"expected one of: {'; '.join(f'{k}: {v}' for k, v in FORMATS.items())}. Map your columns "
                    "with a column map (e.g. {instruction: your_column}) or name the format"
                )
        yield PARSERS[fmt](where, row)


def _need(row: dict[str, Any], key: str, where: str, fmt: str) -> Any:
    if key not in row:
        unknown = sorted(k for k in row if k not in COLUMN_FIELDS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} and no {key!r}; a {fmt} row ({FORMATS[fmt]}) "
                "needs it: rename the key or map it with a column map"
            )
        raise ConfigError(f"{where}: missing key {key!r}; a {fmt} row ({FORMATS[fmt]}) needs it")
    return row.pop(key)


def _seed_task(where: str, row: dict[str, Any]) -> Row:
    instruction = _need(row, "instruction", where, "seed_tasks")
    instances = _need(row, "instances", where, "seed_tasks")
    return Row(where, "seed_tasks", instruction, id=row.pop("id", None), instances=instances, meta=row)


def _alpaca(where: str, row: dict[str, Any]) -> Row:
    instruction = _need(row, "instruction", where, "alpaca")
    return Row(
        where, "alpaca", instruction, row.pop("input", None), row.pop("output", None), id=row.pop("id", None), meta=row
    )


def _dolly(where: str, row: dict[str, Any]) -> Row:
    instruction = _need(row, "instruction", where, "dolly")
    input = row.pop("context") if "context" in row else row.pop("input", None)
    output = row.pop("response") if "response" in row else row.pop("output", None)
    if "category" in row and "task_type" not in row:
        row["task_type"] = row.pop("category")
    return Row(where, "dolly", instruction, input, output, id=row.pop("id", None), meta=row)


def _own(where: str, row: dict[str, Any]) -> Row:
    instruction = _need(row, "instruction", where, "own")
    input, output = row.pop("input", None), row.pop("output", None)
    messages = row.pop("messages", None)
    pair = None
    if "chosen" in row and "rejected" in row:  # a preference dataset: the pair goes back into meta
        chosen, rejected, scores = row.pop("chosen"), row.pop("rejected"), row.pop("scores", None)
        row.pop("prompt", None)
        if chosen and rejected:
            pair = {"rejected": rejected[-1]["content"], "scores": list(scores or [])}
    meta = {**{k: v for k, v in row.items() if k not in ("id", "meta")}, **decode_meta(row.get("meta"))}
    turns = None
    if pair is not None:
        meta[PREFERENCE] = pair
    if messages is not None and messages != Record(instruction, input or "", output or "").messages:
        first = Record(instruction, input or "", output or "").messages
        if _is_conversation(messages) and _plain_messages(messages[:2]) == first:
            turns = _plain_messages(messages[2:])  # our own multi-turn rows: the later turns
        else:
            meta["conversation"] = messages  # more than the record's one exchange: keep it whole
    return Row(where, "own", instruction, input, output, id=row.get("id"), meta=meta, turns=turns)


def _plain_messages(messages: list[Any]) -> list[dict[str, Any]]:
    return [{"role": m.get("role"), "content": m.get("content")} for m in messages]


def _is_conversation(messages: Any) -> bool:
    """User and assistant messages in turn, from a user message, with text in each."""
    return (
        isinstance(messages, list)
        and len(messages) % 2 == 0
        and all(
            isinstance(m, dict) and m.get("role") == ("user", "assistant")[i % 2] and isinstance(m.get("content"), str)
            for i, m in enumerate(messages)
        )
    )


def _chat(where: str, row: dict[str, Any], fmt: str, key: str, role: str, content: str) -> Row:
    turns = _need(row, key, where, fmt)
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ConfigError(f"{where}: {key!r} must be a list of {{{role!r}, {content!r}}} objects, got {turns!r}")
    messages = []
    for n, turn in enumerate(turns, 1):
        if role not in turn or content not in turn:
            raise ConfigError(f"{where}: turn {n} of {key!r} needs {role!r} and {content!r}; got {sorted(turn)}")
        messages.append({"role": SPEAKERS.get(str(turn[role]).lower(), str(turn[role])), "content": turn[content]})
    user = next((m["content"] for m in messages if m["role"] == "user"), None)
    if user is None:
        raise ConfigError(
            f"{where}: {key!r} has no user (human) turn, so no instruction; got roles {[m['role'] for m in messages]}"
        )
    answer = next((m["content"] for m in messages if m["role"] == "assistant"), None)
    system = [m["content"] for m in messages if m["role"] == "system"]
    if system:
        row["system"] = system[0] if len(system) == 1 else system
    rest = [m for m in messages if m["role"] != "system"]
    if len(rest) > 2 or (rest and rest[0]["role"] != "user"):
        row["conversation"] = messages  # more than the one exchange a record holds: keep it whole
    return Row(where, fmt, user, "", answer, id=row.pop("id", None), messages=messages, meta=row)


def _sharegpt(where: str, row: dict[str, Any]) -> Row:
    return _chat(where, row, "sharegpt", "conversations", "from", "value")


def _openai_chat(where: str, row: dict[str, Any]) -> Row:
    return _chat(where, row, "chat", "messages", "role", "content")


def _text_row(where: str, row: dict[str, Any]) -> Row:
    key = next((k for k in ("instruction", *TEXT_KEYS) if k in row), None)
    if key is None:
        raise ConfigError(f"{where}: missing key 'prompt', 'question' or 'text'; a text row needs one")
    answer = next((k for k in ("output", *ANSWER_KEYS) if k in row), None)
    output = row.pop(answer) if answer else None
    return Row(where, "text", row.pop(key), row.pop("input", None), output, id=row.pop("id", None), meta=row)


PARSERS = {
    "seed_tasks": _seed_task,
    "own": _own,
    "alpaca": _alpaca,
    "dolly": _dolly,
    "sharegpt": _sharegpt,
    "chat": _openai_chat,
    "text": _text_row,
}


# ---------------------------------------------------------------------------------------------- in one call


def read_rows(
    source: str | Path,
    *,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    split: str | None = None,
    config: str | None = None,
    base_dir: str | Path | None = None,
    what: str = "input",
) -> Iterator[Row]:
    """Every row of a source in the common form (see `open_tables` and `common_rows`)."""
    for table in open_tables(source, split=split, config=config, base_dir=base_dir, what=what):
        yield from common_rows(table, format=format, columns=columns)


def read_records(sources: Iterable[str | Path], **options: Any) -> list[Record]:
    """The records of several sources, in order; `options` as for `read_rows`."""
    return [row.to_record() for source in sources for row in read_rows(source, **options)]
