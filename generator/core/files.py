"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of either.

A file is written to `<name>.tmp` beside it and renamed over it; a folder is built in a staging
folder beside it and swapped in. On an error the staging copy is deleted and the target is left
as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file object (`mode` "w" for UTF-8 text, "wb" for bytes) whose content replaces `path`
    when the block ends without an error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, encoding="utf-8" if mode == "w" else None) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8)."""
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def write_json(path: Path, data: Any, *, newline: bool = False, **dumps: Any) -> None:
    """Replace `path` with `json.dumps(data, **dumps)`, plus a final newline when `newline`."""
    write_atomic(path, json.dumps(data, **dumps) + ("\n" if newline else ""))


@contextmanager
def swap_dir(target: Path, *, staging: str | None = None, replace: bool = True) -> Iterator[Path]:
    """An empty staging folder beside `target`, moved into place when the block ends without an error.

    `staging` names the folder (a leftover of that name is removed first); by default it gets a
    fresh hidden name. With `replace` an existing target is moved aside to `.<name>.old-<pid>`
    and deleted once the new one is in place. Without it an existing target wins (another process
    finished the same work first) and the staging folder is dropped.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if staging is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    else:
        tmp = target.parent / staging
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        yield tmp
        if replace:
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                tmp.rename(target)
            except OSError:  # another process won the race: theirs is as good as ours
                if not target.is_dir():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
