"""Private Evolution's iterations (Lin et al., ICLR 2024; Aug-PE for text, Xie et al., ICML 2024),
apart from the model: an initial population, then per iteration a noisy vote of the private
records, parents drawn in proportion to it, and their variations at a decreasing degree of change.

Each vote is stored (`vote-NNN.json`: the population voted on, its noisy histogram, the threshold
and the utility figures) before any variation of it is asked for, and the noise comes from a seed
stored once (`noise.json`): a run killed between a vote and its variations resumes from the stored
vote, and a vote drawn again is drawn with the same noise. Either way no iteration is voted twice
with fresh noise, and the resumed run releases the same parents. The folder belongs to the run
directory: the seed and the noisy histogram together give back the clean histogram.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from generator.core.files import write_json
from generator.evolution.mechanism import draw, kept_weights, nearest_votes, noise_rng, noisy_histogram
from generator.evolution.utility import utility

NOISE = "noise.json"

# A population for a size (the random API); a population for parents at a degree of change in an
# iteration (the variation API). None: the sending stopped (a budget) and the evolution stops with it.
Initial = Callable[[int], Awaitable[list[str] | None]]
Vary = Callable[[list[str], float, int], Awaitable[list[str] | None]]


@dataclass
class Vote:
    """One iteration's release: the population voted on and its noisy counts (raw; those under
    `threshold` weigh nothing in the draw), with how close the population was to the private set."""

    iteration: int
    population: list[str]
    noisy: list[float]
    threshold: float
    sigma: float
    utility: dict[str, float] = field(default_factory=dict)

    @property
    def weights(self) -> np.ndarray:
        return kept_weights(np.asarray(self.noisy), self.threshold)

    @property
    def kept(self) -> int:
        """Samples whose noisy count passed the threshold."""
        return int((self.weights > 0).sum())


class State:
    """The stored part of the evolution, in `folder`. `key` says what it was made from (the private
    records and the settings that decide the votes): a folder made from anything else is emptied,
    and a new noise seed drawn (a new release)."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        stored = self._read(folder / NOISE)
        self.reset = stored is not None and stored.get("key") != key  # made from something else
        if stored is None or stored.get("key") != key:
            for old in folder.glob("vote-*.json"):
                old.unlink()
            stored = {"key": key, "seed": secrets.randbits(128)}
            write_json(folder / NOISE, stored)
        self.seed: int = int(stored["seed"])

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def _path(self, iteration: int) -> Path:
        return self.folder / f"vote-{iteration:03d}.json"

    def vote(self, iteration: int) -> Vote | None:
        data = self._read(self._path(iteration))
        return Vote(**data) if data is not None else None

    def save(self, vote: Vote) -> None:
        write_json(self._path(vote.iteration), asdict(vote), ensure_ascii=False)

    def votes(self) -> list[Vote]:
        found = sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("vote-*.json"))
        return [v for i in found if (v := self.vote(i)) is not None]


def degrees(start: float, end: float, iterations: int) -> list[float]:
    """The degree of change of each iteration's variations, from `start` down to `end`."""
    if iterations == 1:
        return [end]
    return [round(start + (end - start) * i / (iterations - 1), 4) for i in range(iterations)]


@dataclass
class Evolution:
    """`iterations` votes of the `private` vectors over populations of `size` texts (embedded by
    `embed`), with noise `sigma` and `threshold`; `schedule` holds each iteration's degree."""

    private: np.ndarray
    embed: Callable[[list[str]], np.ndarray]
    state: State
    sigma: float
    threshold: float
    iterations: int
    size: int
    schedule: Sequence[float]
    log: Callable[[str], None] = print

    async def run(self, initial: Initial, vary: Vary) -> Vote | None:
        """Evolve until the last vote, which is returned (the release's parents are drawn from it);
        None when the sending stopped first. A resumed run starts at its last stored vote."""
        stored = self.state.votes()
        start = stored[-1].iteration if stored else 1
        population: list[str] | None = None
        if not stored:
            population = await initial(self.size)
            if population is None:
                return None
        for t in range(start, self.iterations + 1):
            vote = self.state.vote(t)
            if vote is None:
                assert population is not None  # the variations of the stored vote before it
                vote = self.vote(t, population)
            else:
                self.log(f"private evolution: iteration {t}/{self.iterations}: stored vote reused (no budget spent)")
            if t == self.iterations:
                return vote
            population = await vary(self.parents(vote, self.size), self.schedule[t - 1], t)
            if population is None:
                return None
        raise AssertionError("unreachable: the loop returns at the last iteration")

    def vote(self, iteration: int, population: list[str]) -> Vote:
        """The private records' noisy vote over `population`, stored before it is used."""
        vectors = self.embed(population)
        votes = nearest_votes(self.private, vectors)
        noisy = noisy_histogram(votes, self.sigma, noise_rng(self.state.seed, iteration))
        vote = Vote(
            iteration,
            list(population),
            [float(x) for x in noisy],
            self.threshold,
            self.sigma,
            utility(self.private, vectors),
        )
        self.state.save(vote)
        self.log(
            f"private evolution: iteration {iteration}/{self.iterations}: {vote.kept} of {len(population)} samples "
            f"over the threshold; Frechet distance {vote.utility['frechet']:.4f}"
        )
        return vote

    def parents(self, vote: Vote, size: int, draw_id: int = 0) -> list[str]:
        """`size` samples of the vote's population drawn in proportion to its kept noisy counts
        (the same every time: a resumed run asks for the same variations)."""
        rng = np.random.default_rng([self.state.seed, vote.iteration, 1, draw_id])
        return [vote.population[i] for i in draw(vote.weights, size, rng)]
