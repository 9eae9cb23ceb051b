"""Diversity steering: draw demonstrations, topics and personas toward regions of the embedding
space that hold few accepted instructions, and away from over-full ones.

Accepted instructions are clustered online (nearest centre at cosine `radius` or more, else a new
cluster while there are fewer than `max_clusters`; a centre is the normalized mean of its members).
The vectors are the ones the semantic dedup filter computed for the same records; only what it did
not encode (no semantic dedup in the chain, a record rewritten after it) and the seed tasks, once
per run (through the run's `TextVectors`, where the report finds them), are encoded here.

The state is a function of the pool in order: `sync` clusters the records added since its last
call, and a resumed run, which rebuilds the same pool round by round, rebuilds the same clusters
and so sends the same requests. Draws take their randomness from the caller's seeded generator.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from filters.base import Filter
from filters.dedup import SemanticDedup, record_text
from filters.embed import Embedder, TextVectors, make_embedder
from generator.config import SteerConfig
from generator.core.records import Record
from generator.methods.base import Method


class OnlineClusters:
    """Leader clustering with running-mean centres; deterministic in the order points arrive."""

    def __init__(self, radius: float, max_clusters: int) -> None:
        self.radius = radius
        self.max_clusters = max_clusters
        self.sums: list[np.ndarray] = []
        self.centres = np.zeros((0, 0), np.float32)
        self.members: list[array] = []  # positions in the pool, per cluster
        self.of = array("q")  # cluster of each position

    def __len__(self) -> int:
        return len(self.members)

    def add(self, x: np.ndarray) -> None:
        for v in np.asarray(x, np.float32):
            self._add_one(v)

    def _add_one(self, v: np.ndarray) -> None:
        c = self.nearest(v[None, :])[0]
        if c < 0:
            c = len(self.members)
            self.sums.append(v.copy())
            self.members.append(array("q"))
            self.centres = np.vstack([self.centres.reshape(c, len(v)), v[None, :]])
        else:
            self.sums[c] = self.sums[c] + v
            self.centres[c] = self.sums[c] / max(float(np.linalg.norm(self.sums[c])), 1e-12)
        self.members[c].append(len(self.of))
        self.of.append(c)

    def nearest(self, x: np.ndarray, *, join: bool = True) -> np.ndarray:
        """Each row's cluster, -1 where it is farther than `radius` from every centre (and, with
        `join`, a new cluster may still be opened; without, -1 means an uncovered region)."""
        if not self.members:
            return np.full(len(x), -1, np.int64)
        sims = x @ self.centres.T
        best = sims.argmax(axis=1)
        full = join and len(self.members) >= self.max_clusters
        far = sims[np.arange(len(x)), best] < self.radius - 1e-6
        return np.where(far & ~full, -1, best)

    def sizes(self) -> np.ndarray:
        return np.array([len(m) for m in self.members], np.float64)


# Custom's request variables whose values are weighed by where their instructions landed.
LABELS = ("topic", "persona")
# Words of a seed task that place it (the static encoder refuses long texts; the start says enough).
SEED_WORDS = 48


class Steering:
    """What the methods ask when `generation.steer.enabled`: which seeds, pool instructions, topics
    and personas to show. `embed` gives the vectors of records, `encode` those of texts (seeds)."""

    def __init__(
        self, config: SteerConfig, embed: Callable[[list[Record]], np.ndarray], encode: Callable[[list[str]], Any]
    ) -> None:
        self.config = config
        self.embed = embed
        self.encode = encode
        self.clusters = OnlineClusters(config.radius, config.max_clusters)
        self.labels: dict[str, list[str]] = {k: [] for k in LABELS}  # per pool position
        self.seen = 0
        self._seed_vecs: np.ndarray | None = None
        self._seed_weights: tuple[int, np.ndarray] | None = None  # (pool size, weights)

    def sync(self, pool: Sequence[Record]) -> None:
        """Cluster the pool's records added since the last call."""
        if len(pool) < self.seen:
            raise ValueError(
                f"the pool shrank from {self.seen} to {len(pool)} records; steering follows a growing pool"
            )
        new = [pool[i] for i in range(self.seen, len(pool))]
        if new:
            self.clusters.add(self.embed(new))
            for key, values in self.labels.items():
                values.extend(str(r.meta.get(key)) for r in new)
        self.seen = len(pool)

    # -- weights ----------------------------------------------------------------------------------

    def _fill(self) -> np.ndarray:
        """Each cluster's size over the mean size."""
        sizes = self.clusters.sizes()
        return sizes / sizes.mean() if len(sizes) else sizes

    def seed_weights(self, seeds: Sequence[Any]) -> np.ndarray:
        """(1 + c)^-strength per seed task, c = the fill of the cluster around it (0 where no cluster
        is within `radius`: an uncovered region). The run's seeds are encoded once, at the first call."""
        if not len(self.clusters):
            return np.ones(len(seeds))
        if self._seed_weights is not None and self._seed_weights[0] == self.seen:
            return self._seed_weights[1]
        if self._seed_vecs is None:
            cut = [" ".join(s.instruction.split()[:SEED_WORDS]) for s in seeds]
            self._seed_vecs = np.asarray(self.encode(cut), np.float32)
        near = self.clusters.nearest(self._seed_vecs, join=False)
        fill = np.where(near >= 0, self._fill()[np.maximum(near, 0)], 0.0)
        weights = (1.0 + fill) ** -self.config.strength
        self._seed_weights = (self.seen, weights)
        return weights

    def value_weights(self, key: str, values: Sequence[str]) -> list[float]:
        """(1 + c)^-strength per value of a request variable (a custom topic or persona), c = the
        summed fill of the clusters of the accepted instructions it produced, over the mean of
        that sum across the values."""
        fill = self._fill()
        index = {v: i for i, v in enumerate(values)}
        which = np.fromiter((index.get(v, -1) for v in self.labels[key]), np.int64, count=self.seen)
        of = np.frombuffer(self.clusters.of, dtype=np.int64) if self.seen else np.zeros(0, np.int64)
        known = which >= 0
        crowd = np.bincount(which[known], weights=fill[of[known]], minlength=len(values))
        crowd = crowd / crowd.mean() if crowd.sum() else crowd
        return list((1.0 + crowd) ** -self.config.strength)

    # -- draws ------------------------------------------------------------------------------------

    def pick_pool(self, pool: Sequence[Record], k: int, rng: random.Random) -> list[Record]:
        """`k` distinct pool records: a cluster drawn with weight size^(1-strength), then one of its
        members uniformly."""
        k = min(k, len(pool))
        if k <= 0:
            return []
        sizes = self.clusters.sizes()
        weights = list(sizes ** (1.0 - self.config.strength))
        chosen: dict[int, None] = {}
        for _ in range(50 * k):
            if len(chosen) == k:
                break
            [c] = rng.choices(range(len(sizes)), weights=weights)
            members = self.clusters.members[c]
            chosen.setdefault(members[rng.randrange(len(members))], None)
        for pos in range(len(pool)):  # only when the draws kept hitting the same few records
            if len(chosen) == k:
                break
            chosen.setdefault(pos, None)
        return [pool[pos] for pos in chosen]

    def demonstrations(
        self, seeds: Sequence[Any], pool: Sequence[Record], n_seeds: int, n_pool: int, rng: random.Random
    ) -> list[Any]:
        """Seeds drawn away from covered regions, then pool instructions drawn evenly over clusters."""
        self.sync(pool)
        demos = weighted_sample(seeds, self.seed_weights(seeds), n_seeds, rng)
        return demos + [{"instruction": r.instruction} for r in self.pick_pool(pool, n_pool, rng)]

    def combo_weights(self, pool: Sequence[Record], combos: Sequence[tuple[str, ...]]) -> list[float]:
        """Custom's (topic, persona, ...) crossings: the product of their topic's and persona's weights."""
        self.sync(pool)
        weights = {
            key: dict(zip(values, self.value_weights(key, values)))
            for key, values in (("topic", sorted({c[0] for c in combos})), ("persona", sorted({c[1] for c in combos})))
        }
        return [weights["topic"][c[0]] * weights["persona"][c[1]] for c in combos]


def weighted_sample(items: Sequence[Any], weights: Sequence[float], k: int, rng: random.Random) -> list[Any]:
    """`k` distinct items, each drawn with probability proportional to its weight among those left
    (Efraimidis-Spirakis keys log(u)/w, the largest `k`; vectorized, for large seed sets)."""
    k = min(k, len(items))
    u = np.random.default_rng(rng.getrandbits(64)).random(len(items))
    w = np.asarray(weights, np.float64)
    with np.errstate(divide="ignore"):
        keys = np.where(w > 0, np.log(np.maximum(u, 1e-300)) / np.where(w > 0, w, 1.0), -np.inf)
    order = np.argsort(-keys, kind="stable")[:k]
    return [items[i] for i in order]


def embedder_for(filters: Sequence[Filter]) -> tuple[Callable[[list[Record]], np.ndarray], Embedder]:
    """The record vectors: the semantic dedup filter's own (its cache holds every record it judged),
    encoded here with its embedder only when missing; without semantic dedup, the default encoder."""
    dedup = next((f for f in filters if isinstance(f, SemanticDedup)), None)
    embedder = dedup.embedder if dedup is not None else make_embedder("minilm")

    def embed(records: list[Record]) -> np.ndarray:
        # Vectors encoded here join the dedup's (its cascade leaves records without one), which its
        # state keeps: the run's next session encodes them no more.
        cache = dedup.cache if dedup is not None else {}
        missing = [r for r in records if r.id not in cache]
        if missing:
            cache.update(zip((r.id for r in missing), embedder.encode([record_text(r) for r in missing])))
        return np.stack([cache[r.id] for r in records]).astype(np.float32)

    return embed, embedder


def steering_for(
    config: SteerConfig, filters: Sequence[Filter], method: type[Method], vectors: TextVectors | None = None
) -> Steering | None:
    """The run's steering: None when off or the method is not steerable, or when left to the default
    and either the method is not one it helps (`steered_by_default`, measured: BENCHMARKS.md) or no
    semantic dedup computes the embeddings (it would encode every instruction). The seed tasks are
    encoded through the run's `vectors`, which the report reads them from."""
    if config.enabled is False or not method.steerable:
        return None
    if config.enabled is None and (
        not method.steered_by_default or not any(isinstance(f, SemanticDedup) for f in filters)
    ):
        return None
    embed, embedder = embedder_for(filters)
    kept = vectors if vectors is not None else TextVectors()
    return Steering(config, embed, lambda texts: kept.encode(embedder, texts))
