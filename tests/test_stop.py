"""Stopping a run (generator/run/stop.py): one handler for the whole run, one exception."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from generator.core.errors import Interrupted
from generator.run.stop import StopSignals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_before_defer_a_signal_unwinds_at_once(tmp_path: Path, sig: signal.Signals) -> None:
    with pytest.raises(KeyboardInterrupt), StopSignals(tmp_path):
        os.kill(os.getpid(), sig)  # the handler runs before the next line
        pytest.fail("the signal did not unwind")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_after_defer_a_signal_stops_the_engine_and_is_raised_at_the_next_check(
    tmp_path: Path, sig: signal.Signals
) -> None:
    stopped: list[bool] = []

    async def stage(stop: StopSignals) -> None:
        stop.defer()
        stop.engine(asyncio.get_running_loop(), lambda: stopped.append(True))
        os.kill(os.getpid(), sig)
        await asyncio.sleep(0.05)  # the engine's stop runs on the loop
        stop.engine(asyncio.get_running_loop(), None)

    with StopSignals(tmp_path) as stop:
        asyncio.run(stage(stop))  # no exception in the middle of the stage
        assert stopped == [True]
        with pytest.raises(Interrupted, match=f"every finished request is saved in {tmp_path}"):
            stop.check()


def test_previous_handlers_come_back(tmp_path: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals(tmp_path):
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
    assert {s: signal.getsignal(s) for s in before} == before


def test_no_signal_no_stop(tmp_path: Path) -> None:
    with StopSignals(tmp_path) as stop:
        stop.defer()
        stop.check()
    assert stop.received is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_inside_unwinding_a_signal_unwinds_at_once_even_after_defer(tmp_path: Path, sig: signal.Signals) -> None:
    with StopSignals(tmp_path) as stop:
        stop.defer()
        with pytest.raises(KeyboardInterrupt), stop.unwinding():  # the server's start
            os.kill(os.getpid(), sig)
            pytest.fail("the signal did not unwind")
        assert stop.deferring
        stop.check()  # the unwound signal is not raised twice


def test_unwinding_after_a_noted_signal_raises_interrupted(tmp_path: Path) -> None:
    with StopSignals(tmp_path) as stop:
        stop.defer()
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(Interrupted), stop.unwinding():
            pytest.fail("a server would start after Ctrl-C")
