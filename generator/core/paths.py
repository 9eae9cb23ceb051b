"""Where the built-in prompts and configs are, in a source tree and in an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # generator/
# A wheel carries prompts/ and configs/ inside the package (see pyproject.toml); a source tree
# or an editable install has them at the repository root.
_ROOTS = (_PACKAGE / "_data", _PACKAGE.parent)


def builtin_dir(kind: str) -> Path:
    """The folder of built-in `prompts` or `configs`."""
    for root in _ROOTS:
        if (root / kind).is_dir():
            return root / kind
    raise FileNotFoundError(f"built-in {kind}/ not found next to {_PACKAGE}")


def builtin_path(kind: str, name: str) -> Path | None:
    """A built-in file by name (`default.yaml`, `seeds/writing.jsonl`), or None."""
    path = builtin_dir(kind) / name
    return path if path.is_file() else None


def cache_dir() -> Path:
    """The user cache: `$XDG_CACHE_HOME/instructforge`, else `~/.cache/instructforge`."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "instructforge"
