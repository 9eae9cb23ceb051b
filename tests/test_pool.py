"""The pool of instructions spilled to a file reads back as the list of records it was given."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from generator.core.records import Record
from generator.run import pool as pool_mod
from generator.run.pool import Pool


def _records(n: int) -> list[Record]:
    rng = random.Random(n)
    return [
        Record(
            f"task {i} " + "word " * rng.randrange(0, 80),
            "an input" if i % 5 == 0 else "",
            "done" if i % 3 == 0 else "",
            {"round": i // 10, "seed_ids": [f"s{i}"], "template": "instructions", "odd": "é \ud800 \x00"},
        )
        for i in range(n)
    ]


@pytest.fixture
def filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Pool, list[Record]]:
    monkeypatch.setattr(pool_mod, "_BLOCK", 100)  # blocks shorter than some lines
    records = _records(300)
    pool = Pool(tmp_path)
    pool.extend(records[:120])
    pool.extend([])
    pool.extend(records[120:])
    return pool, records


def test_reads_back_as_the_list(filled: tuple[Pool, list[Record]]) -> None:
    pool, records = filled
    assert len(pool) == len(records)
    assert list(pool) == records
    assert [pool[i] for i in range(-len(records), len(records))] == records + records
    with pytest.raises(IndexError):
        pool[len(records)]


@pytest.mark.parametrize("cut", [slice(-37, None), slice(10, 50, 3), slice(-400, None), slice(5, 5), slice(None)])
def test_slices_read_as_list_slices(filled: tuple[Pool, list[Record]], cut: slice) -> None:
    pool, records = filled
    view = pool[cut]
    assert len(view) == len(records[cut])
    assert list(view) == records[cut]
    assert list(view[2:9]) == records[cut][2:9]


def test_random_picks_are_those_of_the_list(filled: tuple[Pool, list[Record]]) -> None:
    """Demonstrations are sampled from the pool: the same seed must pick the same records."""
    pool, records = filled
    for seed in range(5):
        assert random.Random(seed).sample(pool, 7) == random.Random(seed).sample(records, 7)


def test_tasks_come_done_first_then_in_order_and_close_empties(filled: tuple[Pool, list[Record]]) -> None:
    pool, records = filled
    pool[3]  # a read by index meanwhile does not disturb the order
    assert list(pool.tasks()) == [r for r in records if r.output] + [r for r in records if not r.output]
    pool.close()
    assert len(pool) == 0 and list(pool) == []


def test_the_file_has_no_name_in_the_run_directory(tmp_path: Path) -> None:
    pool = Pool(tmp_path)
    pool.extend(_records(3))
    assert list(tmp_path.iterdir()) == []


def test_evol_instruct_picks_the_same_parents_from_a_pool_or_a_list(
    filled: tuple[Pool, list[Record]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    pool, records = filled
    from generator.methods.base import Inputs, RoundSettings
    from generator.methods.evol_instruct import EvolConfig, EvolInstruct

    seeds = [SimpleNamespace(instruction=f"seed {i}", id=f"s{i}") for i in range(4)]
    inputs = Inputs(
        EvolConfig(operations=["deepen", "broaden"]),
        RoundSettings(overgenerate=2.0, requests_per_round=16),
        seeds,  # type: ignore[arg-type]
        {"evol_breadth": "b", "evol_depth": "d"},  # type: ignore[dict-item]
    )
    evol = EvolInstruct(inputs)
    for rnd, need in [(0, 50), (1, 50), (2, 1000), (3, 1)]:
        from_pool = [a.variables for a in evol.asks(pool, rnd, need)]
        from_list = [a.variables for a in evol.asks(records, rnd, need)]
        assert from_pool == from_list
        assert rnd not in (1, 2) or any(v["instruction"].startswith("task") for v in from_pool)
