"""The run directory's append-only record of results, which makes a run resumable.

Layout of `run_dir`:
    fingerprint.json   what produced the results (the config parts that change them)
    results.jsonl      one `Result` per line, appended in batches as results arrive
    engine_stats.json  accounting per session (`write_stats`)
    .lock              held while a process writes, so two runs cannot mix their lines

Appends go to the kernel with one `write` per batch: a killed process loses at most the batch in
its buffer (sent again on resume) and can leave a torn last line, which the next open cuts off.

Results are not held in memory: the store indexes where each request's successful line starts in
results.jsonl (and its length), and `get` reads that one line when asked.

A write that fails (disk full, read-only) raises `StorageError` with the file cut back to its
last whole batch, so the run stops with one line and the same command resumes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.core.errors import ConfigError, StorageError
from generator.core.files import write_json
from generator.core.keymap import KeyMap
from generator.llm.requests import Result
from generator.run.cost import Costs

RESULTS = "results.jsonl"
FINGERPRINT = "fingerprint.json"
STATS = "engine_stats.json"
LOCK = ".lock"


_SUMMED = ("requests", "ok", "failed", "retried", "prompt_tokens", "completion_tokens", "elapsed_s")


def engine_totals(run_dir: Path) -> dict[str, Any]:
    """The engine figures of every session in `run_dir`'s engine_stats.json added up, as one
    engine's `to_dict()` (what the card shows: a resumed run's whole cost, not its last session's),
    with `sessions`, how many sent anything. Empty when no session was recorded."""
    path = Path(run_dir) / STATS
    if not path.is_file():
        return {}
    sessions = [s for s in json.loads(path.read_text(encoding="utf-8")).get("sessions", []) if s.get("requests")]
    total: dict[str, Any] = {key: sum(s.get(key, 0) for s in sessions) for key in _SUMMED}
    errors: dict[str, int] = {}
    for s in sessions:
        for kind, count in s.get("errors", {}).items():
            errors[kind] = errors.get(kind, 0) + count
    elapsed = total["elapsed_s"]
    total.update(
        errors=errors,
        elapsed_s=round(elapsed, 3),
        completion_tokens_per_s=round(total["completion_tokens"] / elapsed, 2) if elapsed else 0.0,
        endpoints=sessions[-1].get("endpoints", {}) if sessions else {},
        sessions=len(sessions),
    )
    return total


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and not data and not prefix:  # a fingerprint with every key at its default
        return {}
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


class ForeignRun(ConfigError):
    """The run directory holds results that another config (or an unknown one) made."""

    def __init__(
        self,
        problem: str,
        fix: str = "open it with fresh=True to start over, force=True to continue anyway, or use another run_dir",
    ) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem


@dataclass(frozen=True)
class Fingerprint:
    """What decides a run's requests and kept results (`settings`, written to fingerprint.json),
    and the defaults its keys were left out against: a key one side lacks is read as its default."""

    settings: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    # Dotted keys that may change between sessions (stop conditions): a stored fingerprint's value
    # for one is no change, whatever it is (one written before the key was left out holds it).
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flush:
    """When buffered results are written: after `every` results or `interval_s` seconds."""

    every: int = 64
    interval_s: float = 1.0


def fingerprint_changes(
    old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any] | None = None, ignored: Iterable[str] = ()
) -> list[str]:
    """What differs between two fingerprints, one `key: old -> new` per changed leaf (`ignored`
    keys apart).

    A key only one side has is read as its value in `defaults`; one with no default, with the value
    null (None) on the other side, is no change too: a setting added by a later version with a null
    default, or one dropped while unset, changes nothing the run made."""
    a, b = _flatten(old), _flatten(new)
    missing = object()
    known = _flatten(defaults or {})
    changes = []
    for key in sorted((a.keys() | b.keys()) - set(ignored)):
        before, after = a.get(key, known.get(key, missing)), b.get(key, known.get(key, missing))
        if before == after or (before is missing and after is None) or (after is missing and before is None):
            continue
        changes.append(f"{key}: {before!r} -> {after!r}".replace(repr(missing), "(unset)"))
    return changes


def storage_error(path: Path, err: OSError, run_dir: Path) -> StorageError:
    """`err`, raised writing `path` in `run_dir`, as one line that says how to go on."""
    code = errno.errorcode.get(err.errno or 0)
    reason = f"{err.strerror or err}" + (f" ({code})" if code else "")
    return StorageError(
        f"cannot write {path}: {reason}; free disk space or make {run_dir} writable, then run the same "
        "command again to resume (everything saved so far is kept)"
    )


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data, newline=True, indent=2, sort_keys=True, default=str)


# An index entry packs a line's offset and length into one int.
_LENGTH_BITS = 32


class _Index:
    """Request id -> packed entry, compact: a request id (32 hex digits) takes 16 bytes in a
    `KeyMap` and its entry 8 (about 24 B an id, against about 160 B in a dict of str to int);
    ids of another form stay in a dict."""

    def __init__(self) -> None:
        self._map = KeyMap(16)
        self._other: dict[str, int] = {}

    @staticmethod
    def _binary(rid: str) -> bytes | None:
        if len(rid) != 32:
            return None
        try:
            key = bytes.fromhex(rid)
        except ValueError:
            return None
        return key if key.hex() == rid else None  # lower case only: one spelling per key

    def get(self, rid: str) -> int | None:
        key = self._binary(rid)
        return self._other.get(rid) if key is None else self._map.get(key)

    def __contains__(self, rid: object) -> bool:
        return isinstance(rid, str) and self.get(rid) is not None

    def add(self, rid: str, entry: int) -> None:
        """Index `rid` (not indexed yet)."""
        key = self._binary(rid)
        if key is None:
            self._other[rid] = entry
        else:
            self._map.add(key, entry)

    def __len__(self) -> int:
        return len(self._map) + len(self._other)

    def __iter__(self) -> Iterator[str]:
        yield from self._other
        for key in self._map:
            yield key.hex()


class _Ids(AbstractSet[str]):
    """A read-only, set-like view of an index's ids."""

    def __init__(self, index: _Index) -> None:
        self._index = index

    def __contains__(self, rid: object) -> bool:
        return rid in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class RunStore:
    """Results of one run directory. `done_ids` holds every request that succeeded; failed
    results are stored too (for the record) but are not done, so a resumed run retries them.
    Appending a result whose request is already done is a no-op, so nothing is stored twice."""

    def __init__(
        self,
        run_dir: Path,
        fingerprint: Fingerprint | dict[str, Any],
        *,
        fresh: bool = False,
        force: bool = False,
        flush: Flush = Flush(),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS
        self._flush_every = flush.every
        self._flush_interval_s = flush.interval_s
        if not isinstance(fingerprint, Fingerprint):
            fingerprint = Fingerprint(fingerprint)
        self._lock_fd: int | None = None
        try:
            self._open(fingerprint, fresh, force)
        except OSError as err:
            self._release_lock()
            raise storage_error(Path(err.filename or self.run_dir), err, self.run_dir) from None

    def _open(self, fp: Fingerprint, fresh: bool, force: bool) -> None:
        """Lock the run directory, check its fingerprint, index what it holds, open it to append."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        fingerprint = json.loads(json.dumps(fp.settings, default=str))  # as it will read back
        fp_path = self.run_dir / FINGERPRINT
        if fresh:
            for name in (RESULTS, FINGERPRINT, STATS):
                (self.run_dir / name).unlink(missing_ok=True)
        elif fp_path.exists():
            old = json.loads(fp_path.read_text(encoding="utf-8"))
            changes = fingerprint_changes(old, fingerprint, fp.defaults, fp.ignored)
            if changes and not force:
                self._release_lock()
                raise ForeignRun(f"{self.run_dir} holds a run made with another config ({'; '.join(changes)})")
        elif self.path.exists() and self.path.stat().st_size:
            self._release_lock()
            raise ForeignRun(f"{self.path} exists but {fp_path} does not: cannot tell what made these results")
        _write_json(fp_path, fingerprint)
        self._index = _Index()  # request id -> offset << _LENGTH_BITS | length of its successful line
        self.failed_ids: set[str] = set()
        # What the stored results cost per stage, failures included (budgets and the cost report
        # count them over every session).
        self.costs = Costs()
        self._written = self._repair_and_index()  # bytes in the file; the buffer's lines come after
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._reader = open(self.path, "rb", buffering=0)  # noqa: SIM115 (closed in close())
        self._buffer: list[bytes] = []
        self._buffered = 0  # bytes in the buffer
        self._last_flush = float("-inf")

    @property
    def done_ids(self) -> AbstractSet[str]:
        """The requests that succeeded (stored or in the buffer), as a read-only set-like view."""
        return _Ids(self._index)

    # -- lock ----------------------------------------------------------------------------------

    def _take_lock(self) -> int | None:
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            return None
        fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"{self.run_dir} is in use by another instructforge process; wait for it to end or use another run_dir"
            ) from None
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # -- reading -------------------------------------------------------------------------------

    def _repair_and_index(self) -> int:
        """Index what is stored, cutting off a torn last line left by a killed process; the size
        of what is kept."""
        if not self.path.exists():
            return 0
        good_end = 0
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("no end of line")
                    data = json.loads(line)
                except ValueError:
                    if f.read(1):  # not the last line: the file was damaged, not just torn
                        raise ConfigError(
                            f"{self.path}, line {number}: not a stored result ({line[:80]!r}); "
                            "delete that line, or pass --fresh to start over"
                        ) from None
                    break
                rid = data["request_id"]
                self.costs.add_result(
                    (data.get("meta") or {}).get("stage"),
                    data.get("error") is None,
                    data.get("prompt_tokens", 0),
                    data.get("completion_tokens", 0),
                )
                if data.get("error") is None:
                    if rid not in self._index:
                        self._index.add(rid, good_end << _LENGTH_BITS | len(line))
                    self.failed_ids.discard(rid)
                elif rid not in self._index:
                    self.failed_ids.add(rid)
                good_end += len(line)
        if good_end != self.path.stat().st_size:
            os.truncate(self.path, good_end)
        return good_end

    def get(self, request_id: str) -> Result | None:
        """The successful result of `request_id`, read from its line; None when it has none."""
        entry = self._index.get(request_id)
        if entry is None:
            return None
        offset, length = entry >> _LENGTH_BITS, entry & ((1 << _LENGTH_BITS) - 1)
        if offset + length > self._written:
            self.flush()  # still in the buffer
        self._reader.seek(offset)
        line = self._reader.read(length)
        return Result.from_dict(json.loads(line))

    def results(self, *, failed: bool = False) -> Iterator[Result]:
        """Stored results, one per request: the successful ones, plus with `failed=True` the
        last failure of each request that never succeeded. Buffered results are written first."""
        self.flush()
        last_failure: dict[str, Result] = {}
        offset = 0
        with open(self.path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                result = Result.from_dict(json.loads(line))
                if result.ok:
                    if self._index.get(result.request_id) == offset << _LENGTH_BITS | len(line):
                        yield result  # the indexed (first) success of its request
                elif failed:
                    last_failure[result.request_id] = result
                offset += len(line)
        for rid, result in last_failure.items():
            if rid not in self._index:
                yield result

    # -- writing -------------------------------------------------------------------------------

    def append(self, result: Result) -> None:
        rid = result.request_id
        if rid in self._index:
            return
        line = (json.dumps(result.to_dict(), ensure_ascii=False, default=str) + "\n").encode()
        self.costs.add_result(result.meta.get("stage"), result.ok, result.prompt_tokens, result.completion_tokens)
        if result.ok:
            self._index.add(rid, (self._written + self._buffered) << _LENGTH_BITS | len(line))
            self.failed_ids.discard(rid)
        else:
            self.failed_ids.add(rid)
        self._buffer.append(line)
        self._buffered += len(line)
        # Batches when results stream in; each result at once when they trickle in (a slow
        # server), so that none waits in the buffer for the next one.
        if len(self._buffer) >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_interval_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            view = memoryview(data)
            size = os.fstat(self._fd).st_size
            try:
                while view:  # os.write may write less than asked
                    written = os.write(self._fd, view)
                    self._written += written
                    self._buffered -= written
                    view = view[written:]
            except OSError as err:
                # No torn line in the middle of the file, should anything be written after this. The
                # run stops here; the batch's results are sent again on resume.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, size)
                self._written, self._buffered = size, 0
                raise storage_error(self.path, err, self.run_dir) from None

    def write_stats(self, stats: dict[str, Any], cost: dict[str, Any] | None = None) -> None:
        """Add one session's engine accounting to `engine_stats.json`, and the whole run's `cost`
        per stage (`generator.run.cost.Costs.to_dict`) when given."""
        path = self.run_dir / STATS
        sessions = json.loads(path.read_text(encoding="utf-8")).get("sessions", []) if path.exists() else []
        sessions.append(stats)
        data: dict[str, Any] = {"sessions": sessions}
        if cost is not None:
            data["cost"] = cost
        try:
            _write_json(path, data)
        except OSError as err:
            raise storage_error(path, err, self.run_dir) from None

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        except OSError as err:
            raise storage_error(self.path, err, self.run_dir) from None
        finally:
            os.close(self._fd)
            self._fd = None  # type: ignore[assignment]
            self._reader.close()
            self._release_lock()
            self._index = _Index()  # a closed store answers nothing: the index is not held on

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
