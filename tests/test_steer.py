"""Diversity steering (generator/run/steer.py): the online clusters, the weighted draws, a resumed
steered run sending the same requests, and steering on against off on a clustered stand-in model
(tests/steer_world.py) at the same target."""

from __future__ import annotations

import json
import random
import shutil
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import pytest
import steer_world as world
from fake_openai import FakeOpenAI
from fake_run import fake_settings

from filters.dedup import SemanticDedup
from filters.embed import TextVectors
from filters.registry import build_chain
from filters.specs import parse_specs
from generator.config import SteerConfig, parse_config
from generator.core.records import Record
from generator.report import measure
from generator.run.context import STATE, fingerprint
from generator.run.pipeline import generate
from generator.run.steer import OnlineClusters, Steering, steering_for, weighted_sample
from generator.run.store import RESULTS


def _unit(v: list[float]) -> np.ndarray:
    x = np.asarray(v, np.float32)
    return x / np.linalg.norm(x)


def _groups(sizes: list[int], dim: int = 8, seed: int = 0) -> np.ndarray:
    """Rows around orthogonal directions, `sizes[i]` of them around axis i, interleaved."""
    rng = np.random.default_rng(seed)
    rows = [(i, _unit(np.eye(dim)[i] + 0.1 * rng.standard_normal(dim))) for i, n in enumerate(sizes) for _ in range(n)]
    order = rng.permutation(len(rows))
    return np.stack([rows[j][1] for j in order])


def _steering(x: np.ndarray, seeds: np.ndarray | None = None, **config) -> tuple[Steering, list[Record]]:
    """Steering over a pool whose vectors are `x` (and seed tasks `seed i` whose vectors are `seeds`)."""
    pool = [Record(instruction=f"task {i}") for i in range(len(x))]
    vecs = {r.id: v for r, v in zip(pool, x)}
    seed_vecs = {f"seed {i}": v for i, v in enumerate(seeds if seeds is not None else [])}
    steer = Steering(
        SteerConfig(enabled=True, **config),
        lambda recs: np.stack([vecs[r.id] for r in recs]),
        lambda texts: np.stack([seed_vecs[t] for t in texts]),
    )
    steer.sync(pool)
    return steer, pool


def test_clusters_follow_the_groups_and_the_cap() -> None:
    x = _groups([30, 10, 5])
    clusters = OnlineClusters(radius=0.7, max_clusters=64)
    clusters.add(x)
    assert sorted(clusters.sizes().astype(int)) == [5, 10, 30]
    capped = OnlineClusters(radius=0.7, max_clusters=2)
    capped.add(x)
    assert len(capped) == 2 and capped.sizes().sum() == len(x)


def test_pool_draws_even_out_clusters_at_full_strength() -> None:
    x = _groups([90, 10])
    small = {i for i, v in enumerate(x) if v.argmax() == 1}
    for strength, low, high in ((1.0, 0.4, 0.6), (0.0, 0.05, 0.15)):
        steer, pool = _steering(x, strength=strength, radius=0.7)
        hits = Counter(pool.index(steer.pick_pool(pool, 1, random.Random(i))[0]) in small for i in range(2000))
        share = hits[True] / 2000
        assert low <= share <= high, f"strength {strength}: small cluster drawn {share:.2f}"


def test_seeds_in_covered_regions_weigh_less() -> None:
    seeds = np.stack([_unit(np.eye(8)[0]), _unit(np.eye(8)[1]), _unit(np.eye(8)[5])])
    steer, _ = _steering(_groups([40, 5]), seeds, radius=0.7)
    crowded, sparse, uncovered = steer.seed_weights([Record(instruction=f"seed {i}") for i in range(3)])
    assert crowded < sparse < uncovered == 1.0


def test_weighted_sample_is_distinct_and_favours_weight() -> None:
    items = list(range(10))
    picks = Counter(x for i in range(500) for x in weighted_sample(items, [9.0] + [1.0] * 9, 3, random.Random(i)))
    assert all(len(set(weighted_sample(items, [1.0] * 10, 3, random.Random(i)))) == 3 for i in range(50))
    assert picks[0] > 2 * max(picks[x] for x in items[1:])


def test_steer_settings_are_in_the_fingerprint() -> None:
    default, on = parse_config({}), parse_config({"generation": {"steer": {"enabled": True, "strength": 0.5}}})
    assert fingerprint(default) != fingerprint(on)
    assert fingerprint(on)["generation"]["steer"] == {
        "enabled": True,
        "strength": 0.5,
        "radius": 0.5,
        "max_clusters": 64,
    }


@pytest.mark.parametrize(
    ("enabled", "chain", "method", "steered"),
    [
        (None, ["length", "semantic_dedup"], "self_instruct", True),
        (None, ["length", "exact_dedup"], "self_instruct", False),
        (None, ["length", "semantic_dedup"], "custom", False),
        (True, ["length", "exact_dedup"], "custom", True),
        (False, ["length", "semantic_dedup"], "self_instruct", False),
    ],
    ids=["default-self-instruct", "default-without-semantic-dedup", "default-custom", "forced-on", "off"],
)
def test_default_steers_where_it_was_measured_to_help(enabled, chain, method, steered) -> None:
    filters = build_chain(parse_specs([{"name": n} for n in chain], where="test"))
    assert (steering_for(SteerConfig(enabled=enabled), filters, method) is not None) == steered


class _CountingEmbedder:
    """One hashed axis per text; keeps every text it was asked to encode."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        out = np.zeros((len(texts), 16), np.float32)
        for i, text in enumerate(texts):
            out[i, zlib.crc32(text.encode()) % 16] = 1.0
        return out


def test_the_report_reads_the_seed_vectors_steering_encoded() -> None:
    seeds = [Record(instruction=f"seed task {i}") for i in range(5)]
    texts = [s.instruction for s in seeds]
    pool = [Record(instruction=f"task {i}") for i in range(6)]
    rows = [{"instruction": r.instruction, "input": "", "output": "an answer"} for r in pool]
    steering_encoder, vectors = _CountingEmbedder("counting"), TextVectors()
    dedup = SemanticDedup(threshold=0.9, embedder=steering_encoder)
    steer = steering_for(SteerConfig(enabled=True), [dedup], "self_instruct", vectors)
    assert steer is not None
    steer.sync(pool)
    steer.seed_weights(seeds)
    assert [steering_encoder.asked.count(t) for t in texts] == [1] * len(texts)
    assert not vectors.encode(steering_encoder, texts).flags.writeable  # shared, so never changed in place
    # The report's encoder of the same name is not asked for the seeds again, and measures the same.
    report_encoder = _CountingEmbedder("counting")
    shared = measure(rows, texts, encoder=report_encoder, vectors=vectors, projection="pca")
    assert not set(texts) & set(report_encoder.asked)
    alone = measure(rows, texts, encoder=_CountingEmbedder("counting"), projection="pca")
    assert shared.nearest_seed == alone.nearest_seed and len(shared.nearest_seed) == len(rows)
    # Another encoder (another model) encodes them itself.
    other = _CountingEmbedder("other")
    measure(rows, texts, encoder=other, vectors=vectors, projection="pca")
    assert set(texts) <= set(other.asked)


# -- against the clustered stand-in model ---------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    fake = FakeOpenAI(reply=world.fake_reply)
    yield fake.start_in_thread()
    fake.stop_thread()


TARGET = 500


@pytest.mark.fake_server
def test_steering_covers_more_than_off_at_the_same_target(stand_in: str, tmp_path: Path) -> None:
    seeds = world.write_seeds(tmp_path / "seeds.jsonl")
    off = world.run_world(tmp_path / "off", stand_in, seeds, target=TARGET, steer={"enabled": False})
    on = world.run_world(tmp_path / "on", stand_in, seeds, target=TARGET, steer={"enabled": True})
    assert on["records"] == off["records"] == TARGET
    table = ", ".join(f"{k} {off[k]:.3f} -> {on[k]:.3f}" for k in off)
    # The smallest topic and the effective number of topics: coverage of the sparse regions.
    assert on["min_topic"] >= off["min_topic"] + 3, f"smallest topic {off['min_topic']} -> {on['min_topic']}: {table}"
    assert on["effective_topics"] > off["effective_topics"] + 0.1, f"effective topics: {table}"
    assert on["vendi"] > off["vendi"], f"Vendi: {table}"
    assert on["acceptance"] > off["acceptance"], f"acceptance: {table}"


def _config(run_dir: Path, url: str, seeds: Path) -> dict:
    generation = {"seeds": str(seeds), "num_instructions": 150, "instances": "response", "steer": {"enabled": True}}
    return fake_settings(run_dir, url, engine={"concurrency": 8}, generation=generation)


@pytest.mark.parametrize("keep_state", [False, True], ids=["state-lost", "state-kept"])
@pytest.mark.fake_server
def test_resumed_steered_run_sends_the_same_requests(stand_in: str, tmp_path: Path, keep_state: bool) -> None:
    seeds = world.write_seeds(tmp_path / "seeds.jsonl")
    whole = generate(parse_config(_config(tmp_path / "whole", stand_in, seeds)), progress=False)
    lines = (whole.run_dir / RESULTS).read_text().splitlines(keepends=True)
    # A run cut off after a third of its results (the dedup filter's saved embeddings lost, as after
    # kill -9, or kept), then run again.
    cut = tmp_path / "cut"
    shutil.copytree(whole.run_dir, cut)
    (cut / RESULTS).write_text("".join(lines[: len(lines) // 3]))
    if not keep_state:
        shutil.rmtree(cut / STATE)
    shutil.rmtree(cut / "dataset")
    resumed = generate(parse_config(_config(cut, stand_in, seeds)), progress=False)
    ids = lambda d: sorted(json.loads(line)["request_id"] for line in (d / RESULTS).read_text().splitlines())  # noqa: E731
    assert ids(cut) == ids(whole.run_dir)
    rows = lambda r: datasets.load_dataset(str(r.dataset_dir))["train"].to_list()  # noqa: E731
    assert resumed.records == whole.records
    assert [(r["id"], r["output"]) for r in rows(resumed)] == [(r["id"], r["output"]) for r in rows(whole)]


def test_topics_whose_instructions_crowd_weigh_less() -> None:
    x = _groups([40, 5, 5])
    steer, pool = _steering(np.zeros((0, 8), np.float32))
    pool = [
        Record(instruction=f"task {i}", meta={"topic": "crowded" if v.argmax() == 0 else "sparse"})
        for i, v in enumerate(x)
    ]
    vecs = {r.id: v for r, v in zip(pool, x)}
    steer.embed = lambda recs: np.stack([vecs[r.id] for r in recs])
    steer.sync(pool)
    crowded, sparse, unused = steer.value_weights("topic", ["crowded", "sparse", "unused"])
    assert crowded < sparse < unused == 1.0
