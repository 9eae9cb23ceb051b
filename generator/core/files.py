"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of either.

A file is written to a temporary file beside it and renamed over it; a folder is built in a
staging folder beside it and swapped in. On an error the staging copy is deleted and the target is
left as it was.

Every temporary name has one shape, `.<name>.<tmp|old>-<pid>@<host>`, so that what a killed
process left behind is recognisable: before it writes, each write path removes the leftovers of
its target whose owner is gone (`clean_stale`). A leftover is gone when it was made on this host
and its pid is no live process, or the live process with that pid started after the leftover was
last changed (the pid was reused; Linux only, from /proc). A leftover made on another host (a
shared file system) is never touched: its owner may be alive there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)@(?P<host>[A-Za-z0-9.-]+)$")
PID_REUSE_SLACK_S = 2.0  # /proc gives a process's start in clock ticks after a boot time in whole seconds


def temp_name(name: str, kind: str = "tmp", pid: int | None = None) -> str:
    """The hidden name of `name`'s staging copy (`tmp`) or moved-aside old copy (`old`) owned by `pid`."""
    return f".{name}.{kind}-{os.getpid() if pid is None else pid}@{HOST}"


def _started_at(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), where /proc tells; else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
        return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def owner_alive(pid: int, changed_at: float = float("inf")) -> bool:
    """Whether process `pid` of this host may still own a leftover last changed at `changed_at`.

    A process we may not signal (PermissionError) is alive. A live process that started after
    `changed_at` is a reuse of the pid, not the owner.
    """
    if pid <= 0:
        return False  # os.kill(0, ...) would signal our own process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OverflowError:
        return False
    started = _started_at(pid)
    return started is None or started <= changed_at + PID_REUSE_SLACK_S


def clean_stale(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the leftovers (see the module docstring) in `folder`, of target `name` or of any; return them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = LEFTOVER.match(entry.name)
        if not m or m["host"] != HOST or (name is not None and m["name"] != name):
            continue
        try:
            changed = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue  # its owner finished meanwhile
        if owner_alive(int(m["pid"]), changed):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file object (`mode` "w" for UTF-8 text, "wb" for bytes) whose content replaces `path`
    when the block ends without an error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    clean_stale(path.parent, path.name)
    tmp = path.with_name(temp_name(path.name))
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
def swap_dir(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """An empty staging folder beside `target` (`temp_name(target.name)`), moved into place when the
    block ends without an error.

    Leftovers of earlier writers that are gone are removed first. With `replace` an existing
    target is moved aside to `temp_name(target.name, "old")` and deleted once the new one is in
    place. Without it an existing target wins (another process finished the same work first) and
    the staging folder is dropped.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target.parent, target.name)
    tmp = target.parent / temp_name(target.name)
    shutil.rmtree(tmp, ignore_errors=True)  # this process's own, from an earlier block that died
    tmp.mkdir()
    try:
        yield tmp
        if replace:
            old = target.parent / temp_name(target.name, "old")
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
