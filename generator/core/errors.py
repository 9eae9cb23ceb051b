"""The project's error hierarchy. The CLI alone turns these into exit codes and one-line messages.

Each message names the value received, what was expected and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class InstructforgeError(Exception):
    """Base of every error a user can cause or fix; the CLI prints it without a traceback."""

    exit_code = 1


class ConfigError(InstructforgeError):
    """A config file, template or seed file is invalid."""

    exit_code = 2


class StorageError(InstructforgeError):
    """The run directory cannot be written: the disk is full, it is read-only, or permission is denied."""


class ServerError(InstructforgeError):
    """The vLLM server could not be started, died, or never became ready."""


class EngineError(InstructforgeError):
    """Generation cannot go on: bad credentials, unknown model, or no endpoint left."""


class ModelError(InstructforgeError):
    """The bundled model could not be found or prepared."""


class HubError(InstructforgeError):
    """Pushing to or reading from the Hub failed."""


class Interrupted(InstructforgeError):
    """The run was stopped by Ctrl-C or SIGTERM after saving everything finished."""

    exit_code = 130


def describe_errors(err: ValidationError, data: Any = None, root: str = "") -> str:
    """A pydantic error as one line naming each key and what was wrong with it.

    Keys read as they are written: `filters.records[0].min_words`. With the validated `data`, the
    tag pydantic puts in a location after choosing a member of a discriminated union (`length` in
    `records.0.length.min_words`) is left out. `root` is the key path of `data` itself."""
    lines = []
    for e in err.errors():
        key = _key(e["loc"], data, root) or "(top level)"
        ctx = e.get("ctx") or {}
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif e["type"] == "missing":
            lines.append(f"missing key '{key}'")
        elif e["type"] == "union_tag_invalid":
            field = ctx["discriminator"].strip("'")
            lines.append(
                f"key '{_join(key, field)}': unknown {field} {ctx['tag']!r}; valid: "
                f"{ctx['expected_tags'].replace(chr(39), '')}"
            )
        elif e["type"] == "union_tag_not_found":
            lines.append(f"key '{key}': missing key {ctx['discriminator']}, which says what it is")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"key '{key}': {msg} (got {e.get('input')!r})")
    return "; ".join(lines)


def _join(key: str, part: str) -> str:
    return f"{key}.{part}" if key else part


def _key(loc: tuple[int | str, ...], data: Any, root: str) -> str:
    key, node = root, data
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
            node = node[part] if isinstance(node, list) and -len(node) <= part < len(node) else None
        elif isinstance(node, dict) and part not in node and part in node.values():
            continue  # a union tag: the member chosen by a value of this mapping, not a key in it
        else:
            key = _join(key, str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return key
