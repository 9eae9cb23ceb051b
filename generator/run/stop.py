"""Stopping a run: Ctrl-C and SIGTERM, from the moment `generate` starts to the moment it returns.

One handler for the whole run. Until `defer()`, and inside `unwinding()` (while the server starts,
which the run does when its first request must be sent), a signal unwinds at once as
`KeyboardInterrupt`: nothing is being written then. From `defer()` on it is noted, the
engine is asked to stop sending (requests in flight get `engine.stop_grace_s` to finish), and the
run checks at known points (after each stage's requests, between steps, before it returns) and
raises `Interrupted` there, so a signal is never lost in a finalizer and never cuts a write in half.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from generator.core.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _unwind(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_unwinds() -> None:
    """SIGTERM (a batch scheduler's stop) unwinds like Ctrl-C for every command, so servers are
    stopped and files closed on the way out; `generate` replaces this with `StopSignals`."""
    signal.signal(signal.SIGTERM, _unwind)


class StopSignals:
    """Installed with `with StopSignals(run_dir) as stop:`; the previous handlers come back on exit.

    `stop.engine(loop, engine.stop)` connects the engine while it runs; a second signal makes the
    engine cancel what is still in flight at once."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.received: int | None = None
        self.deferring = False
        self._previous: dict[int, object] = {}
        self._stop_engine: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None

    def __enter__(self) -> StopSignals:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def defer(self) -> None:
        """From now on a signal is noted and honoured at the next `check()`."""
        self.deferring = True

    @contextlib.contextmanager
    def unwinding(self) -> Iterator[None]:
        """A block that writes nothing and may take long (the server's start): a signal that came
        before it raises `Interrupted`; one that comes inside unwinds it at once."""
        self.check()
        deferring, self.deferring = self.deferring, False
        try:
            yield
        finally:
            self.deferring = deferring

    def _note(self, signum: int, frame: object) -> None:
        if not self.deferring:
            _unwind(signum, frame)
        self.received = signum
        if self._stop_engine is not None:
            loop, stop = self._stop_engine
            loop.call_soon_threadsafe(stop)

    def engine(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None] | None) -> None:
        """Connect (or, with None, disconnect) the engine's `stop`."""
        self._stop_engine = None if stop is None else (loop, stop)

    def check(self) -> None:
        """Raise `Interrupted` when a signal arrived: everything finished so far is saved."""
        if self.received is not None:
            raise interrupted(self.run_dir)


def interrupted(run_dir: Path) -> Interrupted:
    return Interrupted(
        f"stopped; every finished request is saved in {run_dir}. Run the same command again to resume where it stopped."
    )
