"""The live progress display of a run: it reads the engine's results, it does not send them."""

from __future__ import annotations

import time
from typing import Any

from generator.llm.requests import Result


class Progress:
    """The live bar on stderr: done/total, kept, failed, completion tokens/s, ETA.

    The run calls `restart(total)` before each stage's requests, `update(result)` for each result
    the engine yields and `add_kept(n)` for what its filters keep. Counting costs nothing per
    result: the bar reads the counters when it redraws."""

    def __init__(self, enabled: bool, target: int | None = None) -> None:
        self.enabled = enabled
        self.target = target  # the record target, for the projected time to reach it
        self.total: int | None = None
        self.done = 0
        self.kept = 0
        self.failed = 0
        self.tokens = 0
        self._started = time.monotonic()
        self._sending = False
        self._bar: Any = None
        self._task: Any = None
        self._last_draw = 0.0

    def start(self) -> None:
        if not self.enabled or self._bar is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TimeRemainingColumn
        from rich.text import Text

        counters = self

        class _Counts(ProgressColumn):
            def render(self, task: Any) -> Text:
                elapsed = max(time.monotonic() - counters._started, 1e-9)
                total = "?" if counters.total is None else str(counters.total)
                return Text(
                    f"{counters.done}/{total} done  {counters.kept} kept  {counters.failed} failed  "
                    f"{counters.tokens / elapsed:,.0f} tok/s{counters.projection(elapsed)}"
                )

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            _Counts(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task("generating", total=self.total)
        self._bar.start()

    def restart(self, total: int | None) -> None:
        """Requests expected from now on (this stage): done and failed start again from 0;
        kept and tokens/s carry on."""
        if not self._sending:  # tokens/s count from the first request, not from the server's start
            self._sending = True
            self._started = time.monotonic()
        self.total = total
        self.done = self.failed = 0
        if self._bar is not None:
            self._bar.reset(self._task, total=total)

    def update(self, result: Result) -> None:
        self.done += 1
        self.tokens += result.completion_tokens
        if not result.ok:
            self.failed += 1
        if self._bar is not None:
            now = time.monotonic()
            if now - self._last_draw >= 0.1:  # rich's estimate of the ETA needs the position
                self._last_draw = now
                self._bar.update(self._task, completed=self.done, total=self.total)

    def projection(self, elapsed: float) -> str:
        """With a record target: the time still needed to reach it at the pace of this session."""
        if self.target is None or not self.kept or self.kept >= self.target:
            return ""
        left = elapsed / self.kept * (self.target - self.kept)
        return (
            f"  {self.kept}/{self.target} rows, ~{left / 60:.0f} min to go"
            if left >= 120
            else (f"  {self.kept}/{self.target} rows, ~{left:.0f} s to go")
        )

    def add_kept(self, count: int = 1) -> None:
        self.kept += count

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total)
            self._bar.stop()
            self._bar = None
