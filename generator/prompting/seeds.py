"""Seed tasks: the bundled set in `prompts/seeds/*.jsonl`, or any source the reader knows
(generator/core/readers.py: JSONL, JSON arrays, CSV, parquet, dataset folders, Hugging Face datasets).

Two row shapes become tasks:

- nested, one task a row (the bundled format and Self-Instruct's `seed_tasks.jsonl`):
  `{"id", "instruction", "instances": [{"input", "output"}, ...], "is_classification", "task_type",
  "domain"}`; only `instruction` and `instances` are required, other keys (`name`) are ignored;
- flat, one instance a row (Alpaca, Dolly, ShareGPT, chat, CSV, Hugging Face datasets): columns for
  instruction, input, output and optionally id, is_classification, task_type, domain, renamed
  through `column_map`. Rows sharing an instruction become one task with several instances.

Every problem raises `ConfigError` naming the file and the line (or dataset row).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from generator.core.errors import ConfigError
from generator.core.paths import builtin_dir
from generator.core.readers import Row, Table, check_column_map, common_rows, open_tables
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
"""The fields of a flat seed row (a column map may rename these and the others the reader knows)."""

_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f", ""}


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
    format: str | None = None,
) -> list[SeedTask]:
    """Load seed tasks from `"builtin"` or a source the reader knows (a file, a dataset folder, a
    Hub dataset as `hf:owner/name` or `owner/name`). A relative path is resolved against `base_dir`
    (the config file's folder); `format` overrides the schema told by the keys."""
    columns = check_column_map(column_map)
    if str(source) == "builtin":
        files = sorted(builtin_dir("prompts").glob("seeds/*.jsonl"))
        if not files:
            raise ConfigError(f"no built-in seed files in {builtin_dir('prompts') / 'seeds'}")
        return _merge([(f, _tasks(open_tables(f), columns, format, prefix=f.stem)) for f in files])
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.is_file():
        prefix = path.stem
    else:
        prefix = re.sub(r"\W+", "_", Path(str(source)).stem or str(source)).strip("_") or "seed"
    tables = open_tables(source, base_dir=base_dir, what="seed source")
    return _tasks(tables, columns, format, prefix=prefix)


# ---------------------------------------------------------------------------------------------- checks


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
    model_config = ConfigDict(extra="ignore")
    input: OptionalText = ""
    output: RequiredText


class _NestedRow(BaseModel):
    """A task in the bundled shape; fields in the order they are checked."""

    model_config = ConfigDict(extra="ignore")
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
    """The row's first problem (the fields in order) as a ConfigError naming the file, the line, the
    instance and the field (`names` maps a field to its column). Unknown keys are not a problem:
    the reader keeps them in the row's meta."""
    errors = err.errors()
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


# ---------------------------------------------------------------------------------------------- rows


def _tasks(tables: list[Table], columns: dict[str, str], format: str | None, *, prefix: str) -> list[SeedTask]:
    """The tasks of a source's tables (read as one): nested when its first row is, else flat."""
    label, header = tables[0].label, tables[0].header
    if any(t.text_lines for t in tables):
        raise ConfigError(
            f"seed file {label}: unknown extension '.txt'; expected .jsonl, .csv or .parquet (or a .json "
            "array, a dataset folder, a Hub dataset): a .txt file holds texts without outputs"
        )
    rows = [row for table in tables for row in common_rows(table, format=format, columns=columns)]
    if not rows:
        if header:
            raise ConfigError(f"{label}: the file has a header but no rows; expected at least one seed task")
        raise ConfigError(f"{label}: the file is empty; expected at least one seed task")
    if rows[0].format == "seed_tasks":
        return _nested(rows, prefix=prefix)
    names = {name: columns.get(name, name) for name in FIELDS}
    if header is not None:
        for name in ("instruction", "output"):
            if getattr(rows[0], name) is None:
                raise ConfigError(
                    f"{label}: missing column {names[name]!r} for the {name}; columns are "
                    f"{', '.join(sorted(header))}; map yours with a column map, e.g. {{{name!r}: 'your_column'}}"
                )
    return _group_flat(rows, names, prefix=prefix)


# ---------------------------------------------------------------------------------------------- shapes


def _nested(rows: list[Row], prefix: str) -> list[SeedTask]:
    tasks: list[SeedTask] = []
    ids: dict[str, str] = {}
    instructions: dict[str, str] = {}
    for index, row in enumerate(rows, 1):
        where = row.where
        if row.format != "seed_tasks":
            raise ConfigError(f"{where}: missing key 'instances'; the file's first row is a nested seed task")
        values = {"instruction": row.instruction, "id": row.id, "instances": row.instances}
        values.update({k: row.meta[k] for k in _TASK_FIELDS if k in row.meta})
        try:
            task = _NestedRow.model_validate(values)
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


def _group_flat(rows: list[Row], names: dict[str, str], *, prefix: str) -> list[SeedTask]:
    """One task per distinct instruction, in first-seen order; its rows become its instances.
    `names` maps a field to its column, for errors."""
    groups: dict[str, dict[str, Any]] = {}
    ids: dict[str, str] = {}
    for row in rows:
        where = row.where
        if row.format == "seed_tasks":
            raise ConfigError(f"{where}: a nested seed task (with 'instances') in a file of flat rows")
        if row.output is None:
            raise ConfigError(f"{where}: missing key {names['output']!r} for the output")
        first = not (isinstance(row.instruction, str) and seed_key(row.instruction) in groups)
        values = {"instruction": row.instruction, "input": row.input, "output": row.output, "id": row.id}
        if first:
            values.update({k: row.meta.get(k) for k in _TASK_FIELDS})
        try:
            flat = _FlatRow.model_validate(values)
        except ValidationError as err:
            raise _row_error(err, where, names) from None
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
