"""The one step of Private Evolution that reads the private records: each votes for its nearest
synthetic sample, Gaussian noise is added to the counts, counts under a threshold are zeroed, and
the next population's parents are drawn in proportion to what is left.

The noise of an iteration comes from a generator seeded by (the run's stored noise seed, the
iteration): drawn again, it is the same noise, so a resumed run that must vote again releases the
same histogram and spends nothing more. The seed must stay as private as the records: with it, the
noisy histogram gives back the clean one.
"""

from __future__ import annotations

import numpy as np

# Private rows compared at a time (a block of cosines is ROWS x population floats).
ROWS = 4096


def nearest_votes(private: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Per sample of `population`, how many rows of `private` have it as their nearest (L2 on
    normalized rows: the highest cosine; ties go to the first). One vote per private row."""
    population = np.asarray(population, dtype=np.float32)
    nearest = np.concatenate(
        [
            np.argmax(np.asarray(private[i : i + ROWS], dtype=np.float32) @ population.T, axis=1)
            for i in range(0, len(private), ROWS)
        ]
    )
    return np.bincount(nearest, minlength=len(population)).astype(np.float64)


def noise_rng(seed: int, iteration: int) -> np.random.Generator:
    """The generator of iteration `iteration`'s noise, from the run's noise seed."""
    return np.random.default_rng([seed, iteration])


def noisy_histogram(votes: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """`votes` with independent N(0, sigma^2) noise on every count (negative counts stay: the
    threshold and the draw handle them)."""
    return votes + rng.normal(0.0, sigma, size=len(votes))


def kept_weights(noisy: np.ndarray, threshold: float) -> np.ndarray:
    """The noisy counts with those under `threshold` zeroed (and none negative)."""
    return np.where(noisy >= threshold, np.maximum(noisy, 0.0), 0.0)


def draw(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` indices drawn with replacement in proportion to `weights`; uniformly when every
    weight is zero (the vote then tells nothing, and nothing is taken from it)."""
    total = weights.sum()
    p = weights / total if total > 0 else None
    return rng.choice(len(weights), size=size, replace=True, p=p)
