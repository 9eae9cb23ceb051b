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
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.core.errors import ConfigError
from generator.core.records import PREFERENCE, Record, message, record_id, split_conversation, user_content

FORMATS: dict[str, str] = {
    "seed_tasks": "Self-Instruct / Alpaca seed tasks: instruction, instances [{input, output}], "
    "optional id, name, is_classification",
    "own": "instructforge rows: id, instruction, input, output, messages, meta",
    "alpaca": "instruction, input, output",
    "dolly": "instruction, context, response, category",
    "sharegpt": "conversations [{from: human|gpt|system|function_call|observation, value}], optional tools "
    "(JSON text), chosen/rejected (LLaMA-Factory DPO: one turn each)",
    "chat": "messages [{role: system|user|assistant|tool, content, tool_calls?}] (OpenAI chat), optional tools, "
    "label (KTO)",
    "questions": "turns [text or {content}] (MT-Bench, Arena-Hard questions: each turn a user turn)",
    "preference": "chosen, rejected (texts or messages) and prompt (TRL, UltraFeedback-binarized); without a "
    "prompt, HH-RLHF transcripts (the prompt is their shared prefix)",
    "pairwise": "instruction, output_1, output_2, preference (AlpacaEval annotations: 2 prefers output_2)",
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
    "questions": '{"question_id": 81, "category": "writing", "turns": ["Write a travel blog post about Hawaii.", '
    '"Rewrite it starting every sentence with A."]}',
    "preference": '{"prompt": "Name a prime.", "chosen": "7", "rejected": "8"}',
    "pairwise": '{"instruction": "Name a prime.", "output_1": "8", "output_2": "7", "preference": 2.0}',
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

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".txt", ".jsonl.gz", ".json.gz")
DATASET_CARD, DATASET_DATA = "README.md", "data"
TEXT_KEYS = ("prompt", "question", "text")
ANSWER_KEYS = ("answer", "completion")
SPEAKERS = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatbot": "assistant",  # Cohere
    "system": "system",
    "function_call": "assistant",  # ShareGPT tool calls (LLaMA-Factory, Glaive)
    "observation": "tool",
    "tool": "tool",
}
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
    """A conversation's messages after the first exchange."""
    meta: dict[str, Any] = field(default_factory=dict)
    system: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    """The first answer's tool calls."""
    tools: list[dict[str, Any]] | None = None

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
        if self.id is not None and str(self.id) != record_id(instruction, input, turns, self.system):
            meta["source_id"] = self.id
        return Record(instruction, input, output, meta, turns, self.system, list(self.tool_calls or []), self.tools)


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
    split: str = "train"
    """The split the rows belong to (a file's are `train`)."""


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
    if suffix == ".gz":  # a compressed .jsonl or .json (HH-RLHF's files): read as the inner suffix
        suffix = Path(path.stem).suffix.lower()
        if suffix not in (".jsonl", ".ndjson", ".json"):
            raise ConfigError(f"{path}: a .gz file must hold .jsonl or .json, got {suffix or 'no extension'!r}")
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
    if path.suffix.lower() == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ConfigError(f"{path}: not a gzip file ({exc})") from None
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
    files = sorted(f for f in path.iterdir() if f.is_file() and f.name.lower().endswith(FILE_SUFFIXES))
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
    names = [split] if split is not None else sorted(shards, key=lambda s: (s != "train", s != "test", s))
    tables = [_file_table(shard) for name in names for shard in shards[name]]
    for table in tables:
        table.split = Path(table.label).name.split("-", 1)[0]
    return tables


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
    name = split or "train"
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if split is not None and split not in loaded:
            raise ConfigError(f"the {label} has no split {split!r}; it has {splits}")
        if split is None and "train" not in loaded:
            if len(splits) != 1:
                raise ConfigError(f"the {label} has splits {splits} and none is 'train'; name the split to read")
            name = splits[0]
        loaded = loaded[name]
    return Table(label, _numbered(label, loaded), header=list(loaded.column_names), split=name)


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
    """The schema a row's keys say, or None (the order is the README's, Reading data)."""
    keys = set(row)
    if "instruction" in keys and not keys & {"instances", "conversations", "turns"}:
        return _instruction_format(keys)
    for key, fmt in (("instances", "seed_tasks"), ("conversations", "sharegpt"), ("turns", "questions")):
        if key in keys:
            return fmt
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "messages" in keys:
        return "chat"
    return "text" if keys & set(TEXT_KEYS) else None


def _instruction_format(keys: set[str]) -> str:
    if "messages" in keys or "meta" in keys:
        return "own"
    if {"output_1", "output_2"} <= keys:
        return "pairwise"
    return "dolly" if keys & {"context", "response", "category"} else "alpaca"


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
    for where, row in _exploded(table.rows, columns):
        if fmt is None:
            fmt = detect_format(row)
            if fmt is None:
                raise ConfigError(
                    f"{where}: cannot tell the format from the keys {', '.join(sorted(map(str, row))) or '(none)'}; "
                    f"expected one of: {'; '.join(f'{k}: {v}' for k, v in FORMATS.items())}. Map your columns "
                    "with a column map (--column instruction=your_column, or {instruction: your_column}) "
                    "or name the format"
                )
        yield PARSERS[fmt](where, row)


def _exploded(
    rows: Iterable[tuple[str, dict[str, Any]]], columns: Mapping[str, str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows renamed by the column map; a row whose `instruction` is a list (LEval's
    `instructions`, mapped) is one row per item, with the item of `output` (a parallel list) and
    the row's other keys (the shared `input` document)."""
    for where, raw in rows:
        row = _renamed(raw, columns)
        items = row.get("instruction")
        if not isinstance(items, list):
            yield where, row
            continue
        outputs = row.get("output")
        if outputs is not None and not (isinstance(outputs, list) and len(outputs) == len(items)):
            raise ConfigError(
                f"{where}: 'instruction' is a list of {len(items)}, so 'output' must be a list as long, got {outputs!r}"
            )
        for i, item in enumerate(items):
            one = {**row, "instruction": item, **({"output": outputs[i]} if outputs is not None else {})}
            yield f"{where} item {i + 1}", {**one, "item": i}


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
    tools = _tools(row.pop("tools", None), where)
    pair = None
    if "chosen" in row and "rejected" in row:  # a preference dataset: the pair goes back into meta
        chosen, rejected, scores = row.pop("chosen"), row.pop("rejected"), row.pop("scores", None)
        row.pop("prompt", None)
        if chosen and rejected:
            pair = {"rejected": rejected[-1]["content"], "scores": list(scores or [])}
    if "completion" in row and "label" in row:  # KTO rows: the label goes back into meta
        row.pop("prompt", None)
        row.pop("completion")
        if row["label"] is None:  # a row without one, in a dataset where others have it
            row.pop("label")
    meta = {**{k: v for k, v in row.items() if k not in ("id", "meta")}, **decode_meta(row.get("meta"))}
    if pair is not None:
        meta[PREFERENCE] = pair
    parts: dict[str, Any] = {}
    if messages is not None:
        messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
        parts = split_conversation(messages) or {}
        first = (user_content(instruction, input or ""), output or "")
        if (parts.get("instruction"), parts.get("output")) != first:
            meta["conversation"] = messages  # not the record's own messages: keep them whole
            parts = {}
    return Row(where, "own", instruction, input, output, id=row.get("id"), meta=meta, tools=tools, **_later(parts))


def _later(parts: dict[str, Any]) -> dict[str, Any]:
    """A split conversation's fields past the first exchange, as `Row` takes them."""
    return {k: parts[k] for k in ("turns", "system", "tool_calls") if parts.get(k)}


def _chat(where: str, row: dict[str, Any], fmt: str, key: str, role: str, content: str) -> Row:
    turns = _need(row, key, where, fmt)
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ConfigError(f"{where}: {key!r} must be a list of {{{role!r}, {content!r}}} objects, got {turns!r}")
    messages = [_message(turn, n, where, key, (role, content)) for n, turn in enumerate(turns, 1)]
    pair = _dpo_pair(row, where, (role, content))
    if pair is not None:
        messages.append(pair.pop("chosen"))
        row[PREFERENCE] = pair
    tools = _tools(row.pop("tools", None), where)
    return _conversation_row(where, fmt, messages, row, tools)


def _conversation_row(where: str, fmt: str, messages: list[dict[str, Any]], row: dict[str, Any], tools: Any) -> Row:
    """A conversation as a row: the system prompt, first exchange and later turns as a Record holds
    them, or (a conversation that does not start with a user turn and its answer) its first user
    turn and answer, with the whole conversation in meta["conversation"]."""
    parts = split_conversation(messages)
    if parts is not None:
        return Row(
            where,
            fmt,
            parts["instruction"],
            "",
            parts["output"],
            id=row.pop("id", None),
            messages=messages,
            meta=row,
            tools=tools,
            **_later(parts),
        )
    user = next((m["content"] for m in messages if m["role"] == "user"), None)
    if user is None:
        raise ConfigError(
            f"{where}: the conversation has no user (human) turn, so no instruction; got roles "
            f"{[m['role'] for m in messages]}"
        )
    answer = next((m["content"] for m in messages if m["role"] == "assistant"), None)
    row["conversation"] = messages  # more than a record's shape holds: keep it whole
    return Row(where, fmt, user, "", answer, id=row.pop("id", None), messages=messages, meta=row, tools=tools)


def _message(turn: dict[str, Any], n: int, where: str, key: str, names: tuple[str, str]) -> dict[str, Any]:
    """One turn as an OpenAI chat message: ShareGPT's speakers mapped to roles (`function_call` an
    assistant turn with `tool_calls`, `observation` a `tool` result), other roles lower-cased
    (Cohere's `User`/`Chatbot`); OpenAI's tool fields kept."""
    role_key, content_key = names
    if role_key not in turn or (content_key not in turn and "tool_calls" not in turn):
        raise ConfigError(f"{where}: turn {n} of {key!r} needs {role_key!r} and {content_key!r}; got {sorted(turn)}")
    speaker = str(turn[role_key])
    role = SPEAKERS.get(speaker.lower(), speaker)
    content = turn.get(content_key)
    if speaker == "function_call":
        return message("assistant", "", tool_calls=_calls_from_text(content, f"{where}: turn {n} of {key!r}"))
    if role == "tool" and not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False)
    if role == "assistant" and turn.get("tool_calls"):
        calls = [_call(c, f"{where}: turn {n} of {key!r}") for c in turn["tool_calls"]]
        return message(role, content or "", tool_calls=calls)
    if not isinstance(content, str):
        raise ConfigError(f"{where}: turn {n} of {key!r}: {content_key!r} must be a string, got {content!r}")
    return message(
        role, content, tool_call_id=turn.get("tool_call_id"), name=turn.get("name") if role == "tool" else None
    )


def _call(call: Any, where: str) -> dict[str, Any]:
    """One tool call in OpenAI's form, arguments as JSON text; `call` is OpenAI's or ShareGPT's
    ({name, arguments})."""
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ConfigError(
            f'{where}: a tool call must be {{"name", "arguments"}} (or OpenAI\'s {{"function": ...}}), got {call!r}'
        )
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {
        "id": call.get("id"),
        "type": call.get("type") or "function",
        "function": {"name": function["name"], "arguments": arguments},
    }


def _calls_from_text(value: Any, where: str) -> list[dict[str, Any]]:
    """A ShareGPT `function_call` value: one call or a list of calls, as JSON text (or parsed)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: a function_call value must be JSON {{name, arguments}} ({exc.msg})") from None
    return [_call(c, where) for c in (value if isinstance(value, list) else [value])]


def _tools(value: Any, where: str) -> list[dict[str, Any]] | None:
    """A tools list (JSON text or a list) in OpenAI's form: each {type: function, function: schema}."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: 'tools' must be a JSON list of function schemas ({exc.msg})") from None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(f"{where}: 'tools' must be a list of function schemas, got {value!r}")
    return [t if "type" in t and "function" in t else {"type": "function", "function": t} for t in value]


def _dpo_pair(row: dict[str, Any], where: str, names: tuple[str, str]) -> dict[str, Any] | None:
    """LLaMA-Factory's DPO `chosen`/`rejected` (one turn each, or lists of turns) beside the
    conversation: the chosen answer as a message and the rejected text, as `PREFERENCE` holds it."""
    if "chosen" not in row or "rejected" not in row:
        return None
    answers = []
    for key in ("chosen", "rejected"):
        value = row.pop(key)
        turns = value if isinstance(value, list) else [value]
        if not turns or not isinstance(turns[-1], dict):
            raise ConfigError(f"{where}: {key!r} must be one turn {{{names[0]!r}, {names[1]!r}}} or a list of turns")
        answers.append(_message(turns[-1], 1, where, key, names))
    return {"chosen": answers[0], "rejected": answers[1]["content"], "scores": []}


def _sharegpt(where: str, row: dict[str, Any]) -> Row:
    return _chat(where, row, "sharegpt", "conversations", "from", "value")


def _openai_chat(where: str, row: dict[str, Any]) -> Row:
    return _chat(where, row, "chat", "messages", "role", "content")


def _questions(where: str, row: dict[str, Any]) -> Row:
    """A benchmark's questions (MT-Bench, Arena-Hard): `turns`, each a user turn (text, or
    {content}), with no answers; every turn is a reference for decontamination."""
    turns = _need(row, "turns", where, "questions")
    texts = [t.get("content") if isinstance(t, dict) else t for t in turns] if isinstance(turns, list) else None
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ConfigError(
            f"{where}: 'turns' must be a non-empty list of questions (texts or {{content}}), got {turns!r}"
        )
    if isinstance(turns[0], dict):
        row["turn_objects"] = True  # Arena-Hard's [{content}]: written back the same way
    messages = [m for text in texts for m in (message("user", text), message("assistant", ""))]
    return _conversation_row(where, "questions", messages, row, None)


def _preference(where: str, row: dict[str, Any]) -> Row:
    """`prompt`/`chosen`/`rejected` (texts or messages, as TRL's DPOTrainer and UltraFeedback-binarized
    have them), or HH-RLHF's two transcripts with no prompt (the prompt is their shared prefix, up
    to the final Assistant turn)."""
    chosen, rejected = _need(row, "chosen", where, "preference"), _need(row, "rejected", where, "preference")
    prompt = row.pop("prompt", None)
    if prompt is None and isinstance(chosen, str) and isinstance(rejected, str):
        chosen, rejected = _transcript(chosen, where, "chosen"), _transcript(rejected, where, "rejected")
        prompt = chosen[:-1]
        row["transcripts"] = True  # HH-RLHF: written back as transcripts
    prompt_messages = _as_messages(prompt, "user", where, "prompt")
    chosen_messages = _completion(_as_messages(chosen, "assistant", where, "chosen"), prompt_messages)
    rejected_messages = _completion(_as_messages(rejected, "assistant", where, "rejected"), prompt_messages)
    if len(rejected_messages) != 1 or len(chosen_messages) != 1:
        raise ConfigError(
            f"{where}: 'chosen' and 'rejected' must each be one answer after the prompt; got "
            f"{len(chosen_messages)} and {len(rejected_messages)} messages after it"
        )
    if row.get("messages") is not None and _as_messages(row["messages"], "user", where, "messages") == [
        *prompt_messages,
        *chosen_messages,
    ]:
        row.pop("messages")  # UltraFeedback-binarized: the chosen conversation again
    row[PREFERENCE] = {"rejected": rejected_messages[0]["content"], "scores": []}
    return _conversation_row(where, "preference", [*prompt_messages, *chosen_messages], row, None)


def _as_messages(value: Any, role: str, where: str, key: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [message(role, value)]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return [_message(m, n, where, key, ("role", "content")) for n, m in enumerate(value, 1)]
    raise ConfigError(f"{where}: {key!r} must be a text or a list of {{role, content}} messages, got {value!r}")


def _completion(messages: list[dict[str, Any]], prompt: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages after the prompt (a chosen or rejected conversation may repeat it)."""
    return messages[len(prompt) :] if messages[: len(prompt)] == prompt and len(messages) > len(prompt) else messages


HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _transcript(text: str, where: str, key: str) -> list[dict[str, Any]]:
    """An HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as messages, ending with an answer."""
    parts = HH_TURN.split(text)
    if parts[0] or len(parts) < 5 or parts[-2] != "Assistant":
        raise ConfigError(
            f"{where}: {key!r} must be a transcript of \\n\\nHuman: and \\n\\nAssistant: turns ending with "
            "an Assistant turn, or give a 'prompt'"
        )
    return [message("user" if who == "Human" else "assistant", said) for who, said in zip(parts[1::2], parts[2::2])]


def _pairwise(where: str, row: dict[str, Any]) -> Row:
    """AlpacaEval's pairwise annotations: output_2 is chosen when `preference` is above 1.5, output_1
    below; a tie (1.5) or no preference is no pair: output_1 is the row's output."""
    instruction = _need(row, "instruction", where, "pairwise")
    first, second = _need(row, "output_1", where, "pairwise"), _need(row, "output_2", where, "pairwise")
    preference = row.pop("preference", None)
    row["preference_score"] = preference  # not meta["preference"], which holds a record's pair
    if not isinstance(preference, (int, float)) or preference == 1.5:
        row["output_2"] = second
        return Row(where, "pairwise", instruction, None, first, id=row.pop("id", None), meta=row)
    chosen, rejected = (second, first) if preference > 1.5 else (first, second)
    row[PREFERENCE] = {"rejected": rejected, "scores": []}
    return Row(where, "pairwise", instruction, None, chosen, id=row.pop("id", None), meta=row)


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
    "questions": _questions,
    "preference": _preference,
    "pairwise": _pairwise,
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


def read_split_records(sources: Iterable[str | Path], **options: Any) -> list[tuple[str, Record]]:
    """The records of several sources, in order, each with the split it came from (`train` for a
    file; a dataset's own split names); `options` as for `read_rows`."""
    out = []
    for source in sources:
        for table in open_tables(
            source, **{k: options[k] for k in ("split", "config", "base_dir", "what") if k in options}
        ):
            reading = {k: options[k] for k in ("format", "columns") if k in options}
            out.extend((table.split, row.to_record()) for row in common_rows(table, **reading))
    return out


def read_records(sources: Iterable[str | Path], **options: Any) -> list[Record]:
    """The records of several sources, in order; `options` as for `read_rows`."""
    return [row.to_record() for source in sources for row in read_rows(source, **options)]
