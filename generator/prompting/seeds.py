"""Seed tasks: the bundled set in `prompts/seeds/*.jsonl`, a user's JSONL or CSV file, or a Hugging
Face dataset (a local folder or a Hub repo id).

Two row shapes are read:

- nested (the bundled format), one task a line:
  `{"id", "instruction", "instances": [{"input", "output"}, ...], "is_classification", "task_type",
  "domain"}`; only `instruction` and `instances` are required, unknown keys are rejected;
- flat, one instance a row (CSV, Hugging Face datasets, JSONL without `instances`): columns for
  instruction, input, output and optionally id, is_classification, task_type, domain, renamed
  through `column_map`. Rows sharing an instruction become one task with several instances.

Every problem raises `ConfigError` naming the file and the line (or dataset row).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from generator.core.errors import ConfigError
from generator.core.paths import builtin_dir
from generator.core.text import seed_key

TASK_TYPES = (
    "open_generation",
    "rewriting",
    "extraction",
    "classification",
    "reasoning",
    "coding",
    "math",
    "brainstorming",
    "qa",
    "summarization",
)
"""The task types the bundled seeds use; user seeds may carry any other label."""

FIELDS = ("instruction", "input", "output", "id", "is_classification", "task_type", "domain")
"""Logical fields a `column_map` may rename (logical name -> column name in the source)."""

_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f", ""}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


@dataclass(frozen=True)
class Instance:
    input: str
    output: str


@dataclass(frozen=True)
class SeedTask:
    """One seed task; templates read `.instruction` and `.instances[i].input/.output`."""

    id: str
    instruction: str
    instances: tuple[Instance, ...]
    is_classification: bool = False
    task_type: str | None = None
    domain: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The task in the bundled JSONL shape."""
        return {
            "id": self.id,
            "instruction": self.instruction,
            "instances": [{"input": i.input, "output": i.output} for i in self.instances],
            "is_classification": self.is_classification,
            "task_type": self.task_type,
            "domain": self.domain,
        }


def load_seeds(
    source: str | Path,
    *,
    column_map: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
) -> list[SeedTask]:
    """Load seed tasks from `"builtin"`, a `.jsonl`/`.csv`/`.parquet` file, a dataset folder or a
    Hub repo id. A relative path is resolved against `base_dir` (the config file's folder)."""
    columns = _check_column_map(column_map)
    if str(source) == "builtin":
        files = sorted(builtin_dir("prompts").glob("seeds/*.jsonl"))
        if not files:
            raise ConfigError(f"no built-in seed files in {builtin_dir('prompts') / 'seeds'}")
        return _merge([(f, _load_jsonl(f, columns)) for f in files])
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            return _load_jsonl(path, columns)
        if suffix == ".csv":
            return _load_csv(path, columns)
        if suffix == ".parquet":
            return _load_hf(str(path), f"parquet file {path}", columns, parquet=True)
        raise ConfigError(
            f"seed file {path}: unknown extension {path.suffix!r}; expected .jsonl, .csv or .parquet, "
            "a Hugging Face dataset folder or repo id, or 'builtin'"
        )
    if path.is_dir():
        return _load_hf(str(path), f"dataset folder {path}", columns)
    text = str(source)
    if _REPO_ID.match(text) and not Path(text).suffix:
        return _load_hf(text, f"Hugging Face dataset {text!r}", columns)
    raise ConfigError(
        f"seed source {text!r} not found (looked at {path}); expected 'builtin', an existing "
        ".jsonl/.csv/.parquet file, a dataset folder, or a Hugging Face repo id like 'owner/name'"
    )


# ---------------------------------------------------------------------------------------------- checks


def _check_column_map(column_map: Mapping[str, str] | None) -> dict[str, str]:
    columns = {name: name for name in FIELDS}
    for key, value in (column_map or {}).items():
        if key not in FIELDS:
            raise ConfigError(
                f"seed column map: unknown field {key!r}; valid fields are {', '.join(FIELDS)} "
                "(map each to the column name in your data)"
            )
        if not isinstance(value, str) or not value:
            raise ConfigError(f"seed column map: {key!r} must name a column, got {value!r}")
        columns[key] = value
    return columns


def _merge(loaded: Iterable[tuple[Path, list[SeedTask]]]) -> list[SeedTask]:
    """Concatenate files, rejecting an id or instruction that appears in two of them."""
    tasks: list[SeedTask] = []
    id_owner: dict[str, Path] = {}
    for path, file_tasks in loaded:
        for task in file_tasks:
            if task.id in id_owner:
                raise ConfigError(
                    f"{path}: duplicated id {task.id!r}, already used in {id_owner[task.id]}; "
                    "give each seed task its own id"
                )
            id_owner[task.id] = path
            tasks.append(task)
    return tasks


# A seed row's fields. Values are checked as they are, without coercion: a number where text is
# expected is an error, not a string. Each check raises `_Bad`, which `_row_error` turns into a
# ConfigError naming the file, the line and the field (the column, in flat files).


def _bad(kind: str, message: str, value: Any = None) -> PydanticCustomError:
    return PydanticCustomError(kind, message, {"got": f"{value!r} ({type(value).__name__})"})


def _required_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad("not_text", "must be a string", value)
    if not value.strip():
        raise _bad("empty_text", "empty")
    return value


def _optional_text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad("not_text", "must be a string", value)
    return value


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad("not_flag", "must be true or false", value)


def _label(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad("not_text", "must be a string", value)
    return value


def _task_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _bad("not_text", "must be a string", value)
    return str(value)


RequiredText = Annotated[str, PlainValidator(_required_text)]
OptionalText = Annotated[str, PlainValidator(_optional_text)]
Flag = Annotated[bool, PlainValidator(_flag)]
Label = Annotated[str | None, PlainValidator(_label)]
TaskId = Annotated[str | None, PlainValidator(_task_id)]


class _InstanceRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: OptionalText = ""
    output: RequiredText


class _NestedRow(BaseModel):
    """A task in the bundled shape; fields in the order they are checked."""

    model_config = ConfigDict(extra="forbid")
    instruction: RequiredText
    id: TaskId = None
    instances: list[_InstanceRow] = Field(min_length=1)
    is_classification: Flag = False
    task_type: Label = None
    domain: Label = None


class _FlatRow(BaseModel):
    """One instance of a task, under the logical field names (`_group_flat` maps the columns)."""

    instruction: RequiredText
    input: OptionalText = ""
    output: RequiredText
    id: TaskId = None
    is_classification: Flag = False
    task_type: Label = None
    domain: Label = None


_TASK_FIELDS = ("is_classification", "task_type", "domain")
"""Read from a task's first row only; later rows of the task add instances."""


def _row_error(err: ValidationError, where: str, names: Mapping[str, str] | None = None) -> ConfigError:
    """The row's first problem (unknown keys first, then the fields in order) as a ConfigError naming
    the file, the line, the instance and the field (`names` maps a field to its column)."""
    errors = err.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        parent = extra[0]["loc"][:-1]
        keys = ", ".join(sorted(str(e["loc"][-1]) for e in extra if e["loc"][:-1] == parent))
        if parent:
            return ConfigError(
                f"{where}: instance {parent[1] + 1}: unknown key(s) {keys}; an instance has input and output"
            )
        known = ", ".join(sorted(_NestedRow.model_fields))
        return ConfigError(f"{where}: unknown key(s) {keys}; a seed task has {known}")
    e = errors[0]
    loc, kind = e["loc"], e["type"]
    if loc[0] == "instances" and len(loc) == 1 and kind != "missing":
        return ConfigError(
            f'{where}: \'instances\' must be a non-empty list of {{"input", "output"}} objects, got {e["input"]!r}'
        )
    if loc[0] == "instances" and len(loc) > 1:
        where, loc = f"{where}: instance {loc[1] + 1}", loc[2:]
        if not loc:
            return ConfigError(f"{where}: expected an object with 'input' and 'output', got {e['input']!r}")
        if kind == "missing":
            return ConfigError(f"{where}: missing key {loc[0]!r}")
    key = (names or {}).get(str(loc[0]), str(loc[0]))
    if kind == "missing":
        return ConfigError(f"{where}: missing key {key!r}; every seed task needs it")
    if kind == "empty_text":
        return ConfigError(f"{where}: empty {key}; every seed task needs a non-empty {key}")
    return ConfigError(f"{where}: {key!r} {e['msg']}, got {e['ctx']['got']}")


# ---------------------------------------------------------------------------------------------- files


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    if not text.strip():
        raise ConfigError(f"{path}: the file is empty; expected at least one seed task")
    return text


def _load_jsonl(path: Path, columns: dict[str, str]) -> list[SeedTask]:
    rows: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); expected one JSON object a line"
            ) from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(row).__name__}")
        rows.append((where, row))
    if "instances" in rows[0][1]:
        return _nested(rows, prefix=path.stem)
    return _group_flat(rows, columns, prefix=path.stem, source=str(path))


def _load_csv(path: Path, columns: dict[str, str]) -> list[SeedTask]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = reader.fieldnames or []
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
    if not rows:
        raise ConfigError(f"{path}: the file has a header but no rows; expected at least one seed task")
    return _group_flat(rows, columns, prefix=path.stem, source=str(path), header=header)


def _load_hf(source: str, label: str, columns: dict[str, str], *, parquet: bool = False) -> list[SeedTask]:
    import datasets

    try:
        if parquet:
            loaded = datasets.load_dataset("parquet", data_files=source)
        elif any((Path(source) / name).is_file() for name in ("state.json", "dataset_dict.json")):
            # a folder written by save_to_disk; load_dataset would not read it
            loaded = datasets.load_from_disk(source)
        else:
            loaded = datasets.load_dataset(source)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        raise ConfigError(f"could not load the {label}: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            loaded = loaded["train"]
        elif len(splits) == 1:
            loaded = loaded[splits[0]]
        else:
            raise ConfigError(
                f"the {label} has splits {splits} and none is 'train'; save the split to use as its own dataset"
            )
    header = list(loaded.column_names)
    rows = [(f"{label}: row {index}", row) for index, row in enumerate(loaded)]
    if not rows:
        raise ConfigError(f"the {label} is empty; expected at least one seed task")
    prefix = re.sub(r"\W+", "_", Path(source).stem or source).strip("_") or "seed"
    return _group_flat(rows, columns, prefix=prefix, source=label, header=header)


# ---------------------------------------------------------------------------------------------- shapes


def _nested(rows: list[tuple[str, dict[str, Any]]], prefix: str) -> list[SeedTask]:
    tasks: list[SeedTask] = []
    ids: dict[str, str] = {}
    instructions: dict[str, str] = {}
    for index, (where, row) in enumerate(rows, 1):
        try:
            task = _NestedRow.model_validate(row)
        except ValidationError as err:
            raise _row_error(err, where) from None
        task_id = task.id or f"{prefix}_{index:04d}"
        if task_id in ids:
            raise ConfigError(
                f"{where}: duplicated id {task_id!r}, first used at {ids[task_id]}; give each task its own id"
            )
        ids[task_id] = where
        key = seed_key(task.instruction)
        if key in instructions:
            raise ConfigError(f"{where}: duplicated instruction, first at {instructions[key]}; merge their instances")
        instructions[key] = where
        tasks.append(
            SeedTask(
                id=task_id,
                instruction=task.instruction,
                instances=tuple(Instance(i.input, i.output) for i in task.instances),
                is_classification=task.is_classification,
                task_type=task.task_type,
                domain=task.domain,
            )
        )
    return tasks


def _group_flat(
    rows: list[tuple[str, Mapping[str, Any]]],
    columns: dict[str, str],
    *,
    prefix: str,
    source: str,
    header: list[str] | None = None,
) -> list[SeedTask]:
    """One task per distinct instruction, in first-seen order; its rows become its instances."""
    present = set(header) if header is not None else set().union(*(row for _, row in rows))
    for field in ("instruction", "output"):
        if columns[field] not in present:
            raise ConfigError(
                f"{source}: missing column {columns[field]!r} for the {field}; columns are "
                f"{', '.join(sorted(present))}; map yours with a column map, e.g. {{{field!r}: 'your_column'}}"
            )
    groups: dict[str, dict[str, Any]] = {}
    ids: dict[str, str] = {}
    for where, row in _only_present(rows, columns, header is None):
        raw = row.get(columns["instruction"])
        first = not (isinstance(raw, str) and seed_key(raw) in groups)
        values = {name: row.get(column) for name, column in columns.items() if first or name not in _TASK_FIELDS}
        try:
            flat = _FlatRow.model_validate(values)
        except ValidationError as err:
            raise _row_error(err, where, columns) from None
        instruction, row_id = flat.instruction, flat.id
        instance = Instance(input=flat.input, output=flat.output)
        key = seed_key(instruction)
        group = groups.get(key)
        if group is None:
            task_id = row_id or f"{prefix}_{len(groups) + 1:04d}"
            if task_id in ids:
                raise ConfigError(
                    f"{where}: duplicated id {task_id!r}, first used at {ids[task_id]} for another "
                    "instruction; give each task its own id"
                )
            ids[task_id] = where
            groups[key] = {
                "id": task_id,
                "instruction": instruction,
                "instances": [instance],
                "is_classification": flat.is_classification,
                "task_type": flat.task_type,
                "domain": flat.domain,
            }
        else:
            if row_id is not None and row_id != group["id"] and row_id in ids:
                raise ConfigError(
                    f"{where}: duplicated id {row_id!r}, first used at {ids[row_id]} for another instruction"
                )
            group["instances"].append(instance)
    return [SeedTask(**{**g, "instances": tuple(g["instances"])}) for g in groups.values()]


def _only_present(
    rows: list[tuple[str, Mapping[str, Any]]], columns: dict[str, str], per_row: bool
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Flat JSONL rows have no header: each row must carry the required keys itself."""
    for where, row in rows:
        if per_row:
            for field in ("instruction", "output"):
                if columns[field] not in row:
                    raise ConfigError(f"{where}: missing key {columns[field]!r} for the {field}")
        yield where, row
